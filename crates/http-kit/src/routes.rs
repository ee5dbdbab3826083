//! A service's routes in two groups, public and internal, and the one place
//! that turns them into a router (internal routes behind the token) and an
//! OpenAPI document that says which routes need the token.

use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, RefOr, ResponseBuilder, Type, path::Operation,
};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{INTERNAL_TOKEN_SCHEME, InternalToken, require_internal_token};

/// A service's routes: `public` ones anyone who reaches the port may call,
/// `internal` ones only the system's own services (and its operator).
pub struct ServiceRoutes<S> {
    pub public: OpenApiRouter<S>,
    pub internal: OpenApiRouter<S>,
}

impl<S> ServiceRoutes<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// The OpenAPI document of both groups, the internal routes marked as
    /// needing the bearer token and as answering 401 without it.
    pub fn openapi(self) -> OpenApi {
        self.split().1
    }

    /// The router: internal routes behind [`require_internal_token`], plus
    /// `/openapi.json` and the JSON fallbacks.
    pub fn into_router(self, token: InternalToken) -> Router<S> {
        let (router, api) = self.split_with(Some(token));
        crate::with_openapi_and_fallbacks(router, api)
    }

    fn split(self) -> (Router<S>, OpenApi) {
        self.split_with(None)
    }

    fn split_with(self, token: Option<InternalToken>) -> (Router<S>, OpenApi) {
        let (public, mut api) = self.public.split_for_parts();
        let (mut internal, internal_api) = self.internal.split_for_parts();
        api.merge(mark_internal(internal_api));
        if let Some(token) = token {
            internal = internal.route_layer(axum::middleware::from_fn_with_state(
                token,
                require_internal_token,
            ));
        }
        (public.merge(internal), api)
    }
}

/// Marks every operation of `api` as needing the token.
fn mark_internal(mut api: OpenApi) -> OpenApi {
    let requirement = SecurityRequirement::new(INTERNAL_TOKEN_SCHEME, Vec::<String>::new());
    for item in api.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            secure(operation, &requirement);
        }
    }
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            INTERNAL_TOKEN_SCHEME,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    api
}

fn secure(operation: &mut Operation, requirement: &SecurityRequirement) {
    operation.security = Some(vec![requirement.clone()]);
    let error_body = ObjectBuilder::new()
        .property("error", ObjectBuilder::new().schema_type(Type::String))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("error")
        .required("message");
    let unauthorized = ResponseBuilder::new()
        .description("the internal token is missing or wrong; nothing changed")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(error_body)).build(),
        )
        .build();
    operation
        .responses
        .responses
        .insert("401".to_owned(), RefOr::T(unauthorized));
}
