//! Schemas that exist only for the OpenAPI documents: the shapes and bounds
//! of values that requests parse into checked domain types ([`Name`] for
//! product names and customer ids, the enums' names, the one-of shape of an
//! order). Requests never deserialise into these; they say what the checked
//! types accept.

use utoipa::ToSchema;

use crate::ItemRequest;

/// The schema of a product name or customer id: 1 to 100 characters, no
/// control characters, and something besides spaces (the rules of
/// [`stockroom_domain::ProductName`] and [`stockroom_domain::CustomerId`]).
pub struct Name;

/// [`Name`]'s pattern: no control characters (C0, DEL or C1, as Rust's
/// `char::is_control` counts them), one character that is not a space.
pub const NAME_PATTERN: &str =
    r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

impl utoipa::PartialSchema for Name {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::String)
            .min_length(Some(1))
            .max_length(Some(stockroom_domain::MAX_PRODUCT_NAME_LENGTH))
            .pattern(Some(NAME_PATTERN))
            .into()
    }
}

impl ToSchema for Name {
    fn name() -> std::borrow::Cow<'static, str> {
        std::borrow::Cow::Borrowed("Name")
    }
}

const _: () =
    assert!(stockroom_domain::MAX_PRODUCT_NAME_LENGTH == stockroom_domain::MAX_CUSTOMER_ID_LENGTH);

/// The body of `POST /api/orders`: one product, or several.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Only its schema is used; requests parse as PlaceOrderRequest.
pub enum OrderShape {
    #[schema(title = "one product")]
    One(OneProductOrder),
    #[schema(title = "several products")]
    Several(SeveralProductsOrder),
}

/// An order for one product, the original system's shape.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub struct OneProductOrder {
    #[schema(value_type = Name, example = "c1")]
    customer_id: String,
    #[schema(value_type = Name, example = "Laptop")]
    product_name: String,
    #[schema(minimum = 1, maximum = 1000, example = 2)]
    quantity: u32,
}

/// An order for several products, each named once.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub struct SeveralProductsOrder {
    #[schema(value_type = Name, example = "c1")]
    customer_id: String,
    #[schema(min_items = 1, max_items = 50)]
    items: Vec<ItemRequest>,
}

/// One line of a reservation (the schema of [`OrderItem`]).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Only its schema is used.
pub struct ReserveItem {
    #[schema(value_type = Name)]
    product: String,
    #[schema(minimum = 1, maximum = 1000)]
    quantity: u32,
}

/// The kinds of event (the schema of [`EventKind`]).
#[derive(ToSchema)]
#[allow(dead_code)] // Only its schema is used.
pub enum EventKindName {
    OrderReserved,
    PaymentSucceeded,
    PaymentFailed,
}

/// Why a reservation is released (the schema of [`ReleaseReason`]).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
pub enum ReleaseReasonName {
    PaymentDeclined,
    ReservationExpired,
    CancelledByCustomer,
}

/// An order status, as filters name it (the schema of [`OrderStatus`]).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
pub enum OrderStatusName {
    Pending,
    Reserved,
    Rejected,
    Fulfilled,
    Cancelled,
}
