//! `delegate_loads!(field)`: the read methods of a test `Store` wrapper, passed to the wrapped store.

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
        fn records_read(&self) -> u64 {
            self.$inner.records_read()
        }
    };
}
