//! Spark Connect's protobuf messages (`spark.connect.*`) and its gRPC client
//! (`spark_connect_service_client::SparkConnectServiceClient`), generated at build time from
//! Apache Spark's `.proto` files in `proto/` (see `proto/SOURCE.md`).

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
#![allow(missing_docs)]

pub mod spark {
    pub mod connect {
        tonic::include_proto!("spark.connect");
    }
}

pub use spark::connect::*;
