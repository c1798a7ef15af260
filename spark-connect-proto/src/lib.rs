//! Spark Connect's protobuf messages (`spark.connect.*`) and its gRPC client
//! (`spark_connect_service_client::SparkConnectServiceClient`), generated at build time from
//! Apache Spark's `.proto` files in `proto/` (see `proto/SOURCE.md`).

#![allow(clippy::large_enum_variant, clippy::doc_lazy_continuation)]
#![allow(missing_docs)]
// The doc comments are Spark's own, copied from its .proto files: their links follow
// protobuf's conventions, not rustdoc's.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::redundant_explicit_links)]

pub mod spark {
    pub mod connect {
        tonic::include_proto!("spark.connect");
    }
}

pub use spark::connect::*;
