//! `delegate_reads!(field)`: every method of a test `Store` wrapper but `commit` (and
//! `max_lines_per_commit`), passed to the wrapped store, so a wrapper writes only what it changes.

#[macro_export]
macro_rules! delegate_reads {
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
        fn records_read(&self) -> u64 {
            self.$inner.records_read()
        }
        async fn sku_of_batch(
            &self,
            reference: &str,
        ) -> Result<Option<String>, allocation::service::StoreError> {
            self.$inner.sku_of_batch(reference).await
        }
        async fn allocations_for_order(
            &self,
            orderid: &str,
        ) -> Result<Vec<allocation::service::AllocationView>, allocation::service::StoreError> {
            self.$inner.allocations_for_order(orderid).await
        }
        async fn outbox(
            &self,
            sku: &str,
        ) -> Result<Vec<allocation::domain::EventEnvelope>, allocation::service::StoreError> {
            self.$inner.outbox(sku).await
        }
    };
}
