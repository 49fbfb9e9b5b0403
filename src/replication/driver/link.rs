//! What a shard exchanges with the replication thread: the transport's channel ends
//! (`transport::ShardLink`), named here for the driver.

pub use crate::replication::transport::{Inbound, Outbound, ShardLink};
