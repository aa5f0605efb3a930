//! Delegation for the tests' store wrappers, which change one thing (usually `commit`) and pass the
//! rest to the store they wrap: `delegate_loads!(field)` inside `impl ProductRepository`, and
//! `delegate_views!(Wrapper, field)` for the ports beside the repository, where a wrapper must be a
//! whole `Store` (the contract suite).

#[macro_export]
macro_rules! delegate_loads {
    ($inner:tt) => {
        async fn load(
            &self,
            sku: &str,
            orderids: &[&str],
        ) -> Result<Option<allocation::domain::Product>, allocation::service::StoreError> {
            self.$inner.load(sku, orderids).await
        }
        async fn load_lines(
            &self,
            product: &mut allocation::domain::Product,
            orderids: &[&str],
        ) -> Result<(), allocation::service::StoreError> {
            self.$inner.load_lines(product, orderids).await
        }
        async fn load_lines_to_free(
            &self,
            product: &mut allocation::domain::Product,
            reference: &str,
            excess: u64,
            max_lines: usize,
        ) -> Result<(), allocation::service::StoreError> {
            self.$inner
                .load_lines_to_free(product, reference, excess, max_lines)
                .await
        }
        async fn load_waiting_lines(
            &self,
            product: &mut allocation::domain::Product,
            max_lines: usize,
        ) -> Result<(), allocation::service::StoreError> {
            self.$inner.load_waiting_lines(product, max_lines).await
        }
        async fn sku_of_batch(
            &self,
            reference: &str,
        ) -> Result<Option<String>, allocation::service::StoreError> {
            self.$inner.sku_of_batch(reference).await
        }
    };
}

#[macro_export]
macro_rules! delegate_views {
    ($wrapper:ty, $inner:tt) => {
        impl allocation::service::AllocationsView for $wrapper {
            async fn allocations_for_order(
                &self,
                orderid: &str,
            ) -> Result<Vec<allocation::service::AllocationView>, allocation::service::StoreError>
            {
                self.$inner.allocations_for_order(orderid).await
            }
        }
        impl allocation::service::RecordsRead for $wrapper {
            fn records_read(&self) -> u64 {
                self.$inner.records_read()
            }
        }
        impl allocation::service::OutboxAudit for $wrapper {
            async fn outbox(
                &self,
                sku: &str,
            ) -> Result<Vec<allocation::domain::EventEnvelope>, allocation::service::StoreError>
            {
                self.$inner.outbox(sku).await
            }
        }
    };
}
