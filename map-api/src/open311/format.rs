//! GeoReport v2 answers: JSON or XML by the path's extension, one writer for both, and errors
//! in the spec's shape (`[{"code", "description"}]`).

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Json,
    Xml,
}

/// `requests.json` -> ("requests", Json).
pub(super) fn split_format(file: &str) -> Option<(&str, Format)> {
    let (stem, ext) = file.rsplit_once('.')?;
    match ext {
        "json" => Some((stem, Format::Json)),
        "xml" => Some((stem, Format::Xml)),
        _ => None,
    }
}

pub(super) fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 cannot carry it: an old record must not make the answer ill-formed.
            c if !model::text::allowed_char(c) => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

/// Singular element names for Open311's nested lists.
pub(super) fn item_name(list: &str) -> &str {
    match list {
        "attributes" => "attribute",
        "values" => "value",
        "services" => "service",
        "service_requests" => "request",
        "errors" => "error",
        other => other,
    }
}

pub(super) fn xml_value(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for i in items {
                xml_value(out, item_name(name), i);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Object(m) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in m {
                xml_value(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// An Open311 answer: a list of objects under `root` (JSON: the bare array).
pub(super) fn reply(status: StatusCode, format: Format, root: &str, items: Vec<Value>) -> Response {
    match format {
        Format::Json => (status, Json(Value::Array(items))).into_response(),
        Format::Xml => {
            let mut out = String::from(r#"<?xml version="1.0" encoding="utf-8"?>"#);
            xml_value(&mut out, root, &Value::Array(items));
            (
                status,
                [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
                out,
            )
                .into_response()
        }
    }
}

/// One object answer (a service definition): JSON object, or XML under `root`.
pub(super) fn reply_one(format: Format, root: &str, v: Value) -> Response {
    match format {
        Format::Json => Json(v).into_response(),
        Format::Xml => {
            let mut out = String::from(r#"<?xml version="1.0" encoding="utf-8"?>"#);
            xml_value(&mut out, root, &v);
            ([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], out).into_response()
        }
    }
}

/// The spec's error answer: `[{"code": 400, "description": "field: reason"}, ...]`.
pub(super) fn errors(status: StatusCode, format: Format, descriptions: Vec<String>) -> Response {
    let items = descriptions
        .into_iter()
        .map(|d| json!({"code": status.as_u16(), "description": d}))
        .collect();
    reply(status, format, "errors", items)
}

pub(super) fn error(
    status: StatusCode,
    format: Format,
    description: impl Into<String>,
) -> Response {
    errors(status, format, vec![description.into()])
}

pub(super) fn not_found(format: Format, what: &str) -> Response {
    error(StatusCode::NOT_FOUND, format, format!("{what} not found"))
}
