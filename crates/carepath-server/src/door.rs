//! The one shape of a gRPC handler.
//!
//! Every RPC of every service takes the same three steps: read the caller the
//! admission layer (`overload::Admission`) authenticated, convert the request into a command of domain
//! types, call the use case of `carepath-app`, and convert its answer back. Errors
//! leave through [`crate::error::respond`], the one mapping to a status. A service
//! states its RPCs with [`grpc_service!`], so the steps are written once.

/// Implements a generated gRPC service trait: each `rpc` names the method, its
/// request and response types, and a body that runs with `this` (the service),
/// `caller` (the authenticated [`carepath_app::Caller`]) and the request in scope,
/// returning an `ApiResult` of the response message.
///
/// ```ignore
/// grpc_service! {
///     impl AuditService for Audit {
///         rpc verify_audit(request: pb::VerifyAuditRequest) -> pb::VerifyAuditResponse as |this, caller| {
///             Ok(to_proto(this.inner.verify(&caller).await?))
///         }
///     }
/// }
/// ```
macro_rules! grpc_service {
    (
        impl $service:ident for $door:ident {
            $( type $assoc:ident = $assoc_ty:ty; )*
            $(
                rpc $method:ident($request:ident: $req:ty) -> $resp:ty
                    as |$this:ident, $caller:ident| $body:block
            )*
        }
    ) => {
        #[tonic::async_trait]
        impl $service for $door {
            $( type $assoc = $assoc_ty; )*
            $(
                async fn $method(
                    &self,
                    $request: tonic::Request<$req>,
                ) -> Result<tonic::Response<$resp>, tonic::Status> {
                    let $this = self;
                    $crate::error::respond(async move {
                        let $caller = $crate::context::caller_of(&$request)?;
                        $body
                    })
                    .await
                }
            )*
        }
    };
}

pub(crate) use grpc_service;
