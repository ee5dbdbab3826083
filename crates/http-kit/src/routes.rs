//! A service's routes in two groups, public and internal, and the one place
//! that turns them into a router (internal routes behind the token) and an
//! OpenAPI document that says which routes need the token.

use axum::Router;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, RefOr, ResponseBuilder, Schema, Type,
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
        document_shared_answers(&mut api);
        if let Some(token) = token {
            internal = internal.route_layer(axum::middleware::from_fn_with_state(
                token,
                require_internal_token,
            ));
        }
        (public.merge(internal), api)
    }
}

/// Every operation of `api`, whatever its method.
fn operations(api: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    api.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ]
        .into_iter()
        .flatten()
    })
}

/// Marks every operation of `api` as needing the token.
fn mark_internal(mut api: OpenApi) -> OpenApi {
    let requirement = SecurityRequirement::new(INTERNAL_TOKEN_SCHEME, Vec::<String>::new());
    for operation in operations(&mut api) {
        secure(operation, &requirement);
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
    add_answer(
        operation,
        "401",
        "the internal token is missing or wrong; nothing changed",
    );
}

/// Documents the answers the shared plumbing gives on every route of a kind,
/// so that no route's document omits a status it really returns: a JSON body
/// can be empty or malformed (400), arrive too slowly (408), be too large
/// (413), be declared as something other than JSON (415) or have the wrong
/// shape (422); a query can be unreadable (400) or
/// out of bounds (422); a path names something that may not exist (404).
/// Path parameters are never empty, since an empty segment would name
/// another route.
pub(crate) fn document_shared_answers(api: &mut OpenApi) {
    for operation in operations(api) {
        if operation.request_body.is_some() {
            add_answer(operation, "400", "the body is empty or not JSON");
            add_answer(operation, "408", "the body did not arrive in time");
            add_answer(operation, "413", "the body is too large");
            add_answer(
                operation,
                "415",
                "the body is not declared as Content-Type: application/json",
            );
            add_answer(operation, "422", "the document breaks the request's rules");
        }
        let parameters = operation.parameters.iter_mut().flatten();
        let mut has_query = false;
        let mut has_path = false;
        for parameter in parameters {
            match parameter.parameter_in {
                ParameterIn::Query => has_query = true,
                ParameterIn::Path => {
                    has_path = true;
                    if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema
                        && schema.min_length.is_none()
                    {
                        schema.min_length = Some(1);
                    }
                }
                _ => {}
            }
        }
        if has_query {
            add_answer(operation, "400", "a query parameter is unreadable");
            add_answer(operation, "422", "a query parameter is out of bounds");
        }
        if has_path {
            add_answer(operation, "404", "no such resource");
        }
    }
}

/// Adds an answer in the services' error shape, unless the route already
/// documents that status.
fn add_answer(operation: &mut Operation, status: &str, description: &str) {
    if operation.responses.responses.contains_key(status) {
        return;
    }
    let error_body = ObjectBuilder::new()
        .property("error", ObjectBuilder::new().schema_type(Type::String))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .required("error")
        .required("message");
    let answer = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(error_body)).build(),
        )
        .build();
    operation
        .responses
        .responses
        .insert(status.to_owned(), RefOr::T(answer));
}
