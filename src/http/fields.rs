//! Input fields parsed into the domain types of [`actors::domain`]: a value that does not
//! parse is a 422 naming the field and saying what is wrong.

use actors::domain::{AccountSid, E164, Label};

use super::ApiError;

/// Whether `s` is a plain web URL, the shape the documents give URL fields
/// ([`crate::openapi::formats::HTTP_URL`]): `http://` or `https://`, a host name in lowercase
/// (its last label starts with a letter) or a dotted IPv4 address, an optional port
/// (1–65535), and a path of letters, digits, `.`, `_`, `~`, `-` and `/` (no query, no
/// fragment, no credentials).
pub fn is_web_url(s: &str) -> bool {
    let Some(rest) = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
    else {
        return false;
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let port_ok = port.is_none_or(|p| {
        (1..=5).contains(&p.len())
            && !p.starts_with('0')
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n <= 65_535)
    });
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~-/".contains(&b));
    port_ok && path_ok && (is_host_name(host) || is_ipv4(host))
}

fn is_host_name(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    labels.iter().all(|l| label_ok(l))
        && labels
            .last()
            .is_some_and(|l| l.as_bytes().first().is_some_and(u8::is_ascii_lowercase))
}

fn is_ipv4(host: &str) -> bool {
    let parts: Vec<&str> = host.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            (1..=3).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u8>().is_ok()
        })
}

/// An E.164 phone number as the documents show it: the items of a list of numbers
/// (`#[schema(value_type = Vec<PhoneNumber>)]`; a single field says `format = "e164"`).
#[derive(utoipa::ToSchema)]
#[schema(format = "e164")]
pub struct PhoneNumber(pub String);

/// `v` as an E.164 phone number.
pub fn e164(field: &str, v: &str) -> Result<E164, ApiError> {
    E164::parse(v).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// `v` as a Twilio account SID.
pub fn account_sid(field: &str, v: &str) -> Result<AccountSid, ApiError> {
    AccountSid::parse(v).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// `v` trimmed, as a label of 1 to `max` characters without control characters.
pub fn label(field: &str, v: &str, max: usize) -> Result<Label, ApiError> {
    Label::parse(v, max).map_err(|e| ApiError::invalid(field, e.to_string()))
}

/// An optional label.
pub fn optional_label(field: &str, v: Option<&str>, max: usize) -> Result<Option<Label>, ApiError> {
    v.map(|v| label(field, v, max)).transpose()
}

/// The schema of a list of strings from `values` (each at most once when `unique`), of
/// `min..=max` items (`max` 0: unbounded), `null` allowed when `nullable`: for
/// `#[schema(schema_with = ...)]`, as utoipa has no `uniqueItems` attribute.
pub fn string_list(
    description: &str,
    values: Option<&[&str]>,
    format: Option<&str>,
    (min, max): (usize, usize),
    unique: bool,
    nullable: bool,
) -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{SchemaFormat, SchemaType, Type};
    use utoipa::openapi::{ArrayBuilder, ObjectBuilder};
    let mut item = ObjectBuilder::new().schema_type(Type::String);
    if let Some(values) = values {
        item = item.enum_values(Some(values.iter().copied()));
    }
    if let Some(format) = format {
        item = item.format(Some(SchemaFormat::Custom(format.to_owned())));
    }
    let mut list = ArrayBuilder::new()
        .items(item)
        .min_items(Some(min))
        .max_items((max > 0).then_some(max))
        .unique_items(unique)
        .description(Some(description));
    if nullable {
        list = list.schema_type(SchemaType::from_iter([Type::Array, Type::Null]));
    }
    list.build()
}
