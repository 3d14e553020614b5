//! Generated code for carepath's protobuf contracts, one module per package.
//!
//! Nothing here is written by hand except the module tree and the codec (`codec`:
//! prost's, with malformed input reported as INVALID_ARGUMENT): domain types never
//! depend on this crate, and conversions live at the gRPC edge in `carepath-server`.

#![allow(missing_docs, clippy::all, clippy::pedantic, unused_qualifications)]

pub mod codec;

/// The encoded `FileDescriptorSet` of every carepath contract, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/carepath_descriptor.bin"));

pub mod common {
    pub mod v1 {
        tonic::include_proto!("carepath.common.v1");
    }
}

pub mod directory {
    pub mod v1 {
        tonic::include_proto!("carepath.directory.v1");
    }
}

pub mod precert {
    pub mod v1 {
        tonic::include_proto!("carepath.precert.v1");
    }
}

pub mod notify {
    pub mod v1 {
        tonic::include_proto!("carepath.notify.v1");
    }
}

pub mod oncology {
    pub mod v1 {
        tonic::include_proto!("carepath.oncology.v1");
    }
}

pub mod secondopinion {
    pub mod v1 {
        tonic::include_proto!("carepath.secondopinion.v1");
    }
}

pub mod cases {
    pub mod v1 {
        tonic::include_proto!("carepath.cases.v1");
    }
}

pub mod audit {
    pub mod v1 {
        tonic::include_proto!("carepath.audit.v1");
    }
}
