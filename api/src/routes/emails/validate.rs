//! Strict validation of an email request. Every address is parsed as an RFC 5322 mailbox and no
//! field may carry a line break, so nothing a client sends can inject a header.

use lettre::message::Mailbox;
use serde::Deserialize;
use serde_json::{Map, Value};

use kiln_core::{jobs::EmailPayload, templates::Templates};

/// Most recipients (to + cc + bcc) one request may have.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest subject, in characters (the RFC 5322 line limit).
pub const MAX_SUBJECT: usize = 998;
/// Largest text or HTML body, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;

/// Bodies may break lines and indent; no other control character belongs in an email, and a
/// NUL cannot even be stored.
fn forbidden_in_body(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{c}')
}

/// One address or a list of them.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Addresses {
    One(String),
    Many(Vec<String>),
}

impl Addresses {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one],
            Self::Many(many) => many,
        }
    }
}

/// The body of `POST /v1/emails`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"to": "bob@example.com", "subject": "Hello", "text": "Hi Bob"}))]
pub struct EmailRequest {
    /// One address or a list (with cc and bcc, at most 50 in all).
    #[schema(required = true)]
    pub to: Option<Addresses>,
    pub cc: Option<Addresses>,
    pub bcc: Option<Addresses>,
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
    /// A template name (built-in or from `KILN_EMAIL_TEMPLATES`), rendered with `data`.
    pub template: Option<String>,
    /// The template's variables.
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// Checks every field and returns the job payload, or every problem found, by field.
pub fn validate(
    request: EmailRequest,
    templates: &Templates,
) -> Result<EmailPayload, Map<String, Value>> {
    let mut errors = Map::new();
    let mut error = |field: String, message: &str| {
        errors.entry(field).or_insert_with(|| Value::from(message));
    };

    let mut lists = Vec::new();
    for (name, addresses) in [("to", request.to), ("cc", request.cc), ("bcc", request.bcc)] {
        let addresses = addresses.map(Addresses::into_vec).unwrap_or_default();
        for (i, address) in addresses.iter().enumerate() {
            if address.chars().any(char::is_control) || address.parse::<Mailbox>().is_err() {
                error(format!("{name}[{i}]"), "not a valid email address");
            }
        }
        lists.push(addresses);
    }
    let [to, cc, bcc]: [Vec<String>; 3] = lists.try_into().expect("three lists");
    if to.is_empty() {
        error("to".into(), "at least one recipient is required");
    }
    if to.len() + cc.len() + bcc.len() > MAX_RECIPIENTS {
        error(
            "to".into(),
            "at most 50 recipients (to, cc and bcc together)",
        );
    }

    // A template that cannot render leaves nothing to check below: its fields stay quiet.
    let mut rendering_failed = false;
    let (subject, text, html) = match request.template {
        Some(name) => {
            if request.subject.is_some() || request.text.is_some() || request.html.is_some() {
                error(
                    "template".into(),
                    "give either a template or subject/text/html, not both",
                );
            }
            let data = request.data.unwrap_or_else(|| Value::Object(Map::new()));
            if !data.is_object() {
                error("data".into(), "must be a JSON object");
            }
            if let Some(path) = kiln_core::jobs::find_nul(&data, "data") {
                error(path, "must not contain NUL characters");
                rendering_failed = true;
            }
            match templates.render(&name, &data) {
                _ if rendering_failed => (String::new(), None, None),
                Ok(rendered) => (rendered.subject, rendered.text, rendered.html),
                Err(kiln_core::templates::TemplateError::Unknown(_)) => {
                    error("template".into(), "unknown template");
                    rendering_failed = true;
                    (String::new(), None, None)
                }
                Err(other) => {
                    error("data".into(), &other.to_string());
                    rendering_failed = true;
                    (String::new(), None, None)
                }
            }
        }
        None => {
            if request.data.is_some() {
                error("data".into(), "only used with a template");
            }
            (
                request.subject.unwrap_or_default(),
                request.text,
                request.html,
            )
        }
    };
    if rendering_failed {
        // Nothing was rendered; errors about the empty fields would only confuse.
    } else if subject.trim().is_empty() {
        error("subject".into(), "required");
    } else if subject.chars().any(char::is_control) {
        error(
            "subject".into(),
            "must not contain line breaks or control characters",
        );
    } else if subject.chars().count() > MAX_SUBJECT {
        error("subject".into(), "at most 998 characters");
    }

    if text.is_none() && html.is_none() && !rendering_failed {
        error("text".into(), "give text, html or both");
    }
    for (name, body) in [("text", &text), ("html", &html)] {
        let Some(body) = body else { continue };
        if body.len() > MAX_BODY {
            error(name.into(), "at most 1 MiB");
        } else if body.chars().any(forbidden_in_body) {
            error(
                name.into(),
                "must not contain NUL or control characters other than tab and line breaks",
            );
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EmailPayload {
        to,
        cc,
        bcc,
        subject,
        text,
        html,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: Value) -> EmailRequest {
        serde_json::from_value(json).expect("request shape")
    }

    fn validate(request: EmailRequest) -> Result<EmailPayload, Map<String, Value>> {
        super::validate(request, &Templates::built_in())
    }

    #[test]
    fn a_template_is_rendered_into_the_payload() {
        let payload = validate(request(serde_json::json!({
            "to": "ann@example.com",
            "template": "media_failed",
            "data": {"base_url": "https://k.example", "media": {"id": "m1", "error": "bad"}}
        })))
        .expect("valid");
        assert_eq!(payload.subject, "Your image could not be processed");
        assert!(payload.text.is_some_and(|t| t.contains("bad")));
        assert!(payload.html.is_some());
    }

    #[test]
    fn template_mistakes_are_field_errors() {
        let errors = validate(request(serde_json::json!({
            "to": "ann@example.com", "template": "nope"
        })))
        .expect_err("unknown");
        assert_eq!(errors["template"], "unknown template");
        let errors = validate(request(serde_json::json!({
            "to": "ann@example.com", "template": "media_failed", "data": {}
        })))
        .expect_err("missing data");
        assert!(errors.contains_key("data"), "{errors:?}");
        assert!(!errors.contains_key("subject"), "{errors:?}");
        let errors = validate(request(serde_json::json!({
            "to": "ann@example.com", "template": "media_failed", "subject": "x"
        })))
        .expect_err("both");
        assert!(errors.contains_key("template"), "{errors:?}");
    }

    #[test]
    fn a_plain_message_is_accepted() {
        let payload = validate(request(serde_json::json!({
            "to": "Alice <alice@example.com>", "subject": "Hi", "text": "Hello"
        })))
        .expect("valid");
        assert_eq!(payload.to, ["Alice <alice@example.com>"]);
    }

    #[test]
    fn header_injection_is_refused_in_every_field() {
        let errors = validate(request(serde_json::json!({
            "to": ["ok@example.com", "x@example.com\r\nBcc: victim@example.com"],
            "cc": "not an address",
            "subject": "Hi\r\nBcc: victim@example.com",
            "text": "body"
        })))
        .expect_err("invalid");
        assert!(errors.contains_key("to[1]"), "{errors:?}");
        assert!(errors.contains_key("cc[0]"), "{errors:?}");
        assert!(errors.contains_key("subject"), "{errors:?}");
        assert!(!errors.contains_key("to[0]"));
    }

    #[test]
    fn a_nul_anywhere_is_a_field_error() {
        let errors = validate(request(serde_json::json!({
            "to": "ann@example.com", "subject": "a\u{0}b", "text": "x\u{0}", "html": "<p>\u{0}"
        })))
        .expect_err("nul");
        for field in ["subject", "text", "html"] {
            assert!(errors.contains_key(field), "{field}: {errors:?}");
        }
        let errors = validate(request(serde_json::json!({
            "to": "ann@example.com", "template": "media_failed",
            "data": {"base_url": "x", "media": {"id": "m\u{0}", "error": "bad"}}
        })))
        .expect_err("nul in data");
        assert!(errors.contains_key("data.media.id"), "{errors:?}");
        let ok = validate(request(serde_json::json!({
            "to": "ann@example.com", "subject": "s", "text": "line\r\n\tindented\n"
        })));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn recipients_and_bodies_are_required_and_limited() {
        let many: Vec<String> = (0..51).map(|i| format!("u{i}@example.com")).collect();
        let errors =
            validate(request(serde_json::json!({"to": many, "subject": "s"}))).expect_err("x");
        assert!(
            errors.contains_key("to") && errors.contains_key("text"),
            "{errors:?}"
        );
        let errors = validate(request(serde_json::json!({"subject": ""}))).expect_err("x");
        assert!(
            errors.contains_key("to") && errors.contains_key("subject"),
            "{errors:?}"
        );
    }
}
