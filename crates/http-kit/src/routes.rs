//! A service's routes in three groups, public, internal and the operator's,
//! and the one place that turns them into a router (internal routes behind
//! the internal token, operator routes behind the operator token) and an
//! OpenAPI document that says which routes need which token.

use axum::Router;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, ObjectBuilder, OpenApi, RefOr, ResponseBuilder, Schema, Type,
};
use utoipa_axum::router::OpenApiRouter;

use crate::auth::{
    INTERNAL_TOKEN_SCHEME, InternalToken, OPERATOR_TOKEN_SCHEME, OperatorToken,
    require_internal_token, require_operator_token,
};

/// A service's routes: `public` ones anyone who reaches the port may call,
/// `internal` ones only the system's own services, `operator` ones only the
/// shop's operator.
pub struct ServiceRoutes<S> {
    pub public: OpenApiRouter<S>,
    pub internal: OpenApiRouter<S>,
    pub operator: OpenApiRouter<S>,
}

impl<S> ServiceRoutes<S>
where
    S: Clone + Send + Sync + 'static,
{
    /// The routes a service without operator routes has.
    pub fn new(public: OpenApiRouter<S>, internal: OpenApiRouter<S>) -> ServiceRoutes<S> {
        ServiceRoutes {
            public,
            internal,
            operator: OpenApiRouter::new(),
        }
    }

    /// The OpenAPI document of the three groups, the internal and operator
    /// routes marked as needing their bearer token and as answering 401
    /// without it.
    pub fn openapi(self) -> OpenApi {
        self.split().1
    }

    /// The router: internal routes behind [`require_internal_token`],
    /// operator routes behind [`require_operator_token`] (all refused when
    /// `operator` is `None`), plus `/openapi.json` and the JSON fallbacks.
    pub fn into_router(
        self,
        internal: InternalToken,
        operator: Option<OperatorToken>,
    ) -> Router<S> {
        let (router, api) = self.split_with(Some((internal, operator)));
        crate::with_openapi_and_fallbacks(router, api)
    }

    fn split(self) -> (Router<S>, OpenApi) {
        self.split_with(None)
    }

    fn split_with(
        self,
        tokens: Option<(InternalToken, Option<OperatorToken>)>,
    ) -> (Router<S>, OpenApi) {
        let (public, mut api) = self.public.split_for_parts();
        let (mut internal, internal_api) = self.internal.split_for_parts();
        let (mut operator, operator_api) = self.operator.split_for_parts();
        // axum refuses a route layer on a router without routes.
        let has_internal = !internal_api.paths.paths.is_empty();
        let has_operator = !operator_api.paths.paths.is_empty();
        api.merge(mark_secured(
            internal_api,
            INTERNAL_TOKEN_SCHEME,
            "internal",
        ));
        api.merge(mark_secured(
            operator_api,
            OPERATOR_TOKEN_SCHEME,
            "operator",
        ));
        document_shared_answers(&mut api);
        if let Some((internal_token, operator_token)) = tokens {
            if has_internal {
                internal = internal.route_layer(axum::middleware::from_fn_with_state(
                    internal_token,
                    require_internal_token,
                ));
            }
            if has_operator {
                operator = operator.route_layer(axum::middleware::from_fn_with_state(
                    operator_token,
                    require_operator_token,
                ));
            }
        }
        (public.merge(internal).merge(operator), api)
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

/// Marks every operation of `api` as needing the bearer token of `scheme`
/// (the `role`'s token).
fn mark_secured(mut api: OpenApi, scheme: &str, role: &str) -> OpenApi {
    if api.paths.paths.is_empty() {
        return api;
    }
    let requirement = SecurityRequirement::new(scheme, Vec::<String>::new());
    let missing = format!("the {role} token is missing or wrong; nothing changed");
    for operation in operations(&mut api) {
        operation.security = Some(vec![requirement.clone()]);
        add_answer(operation, "401", &missing);
    }
    api.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            scheme,
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    api
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
