//! Email templates (minijinja): the built-in notifications (`media_ready`, `media_failed`,
//! `digest`) and any an operator adds in `KILN_EMAIL_TEMPLATES`.
//!
//! A template `name` is three files: `name.subject`, `name.txt` and `name.html` (either body
//! may be missing, not both). HTML is auto-escaped; a variable the data does not define is an
//! error rather than an empty string, so a typo never sends a blank email.

use std::{path::Path, sync::Arc};

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

/// The built-in templates, compiled into the binaries.
const BUILT_IN: &[(&str, &str)] = &[
    (
        "media_ready.subject",
        include_str!("../templates/media_ready.subject"),
    ),
    (
        "media_ready.txt",
        include_str!("../templates/media_ready.txt"),
    ),
    (
        "media_ready.html",
        include_str!("../templates/media_ready.html"),
    ),
    (
        "media_failed.subject",
        include_str!("../templates/media_failed.subject"),
    ),
    (
        "media_failed.txt",
        include_str!("../templates/media_failed.txt"),
    ),
    (
        "media_failed.html",
        include_str!("../templates/media_failed.html"),
    ),
    (
        "digest.subject",
        include_str!("../templates/digest.subject"),
    ),
    ("digest.txt", include_str!("../templates/digest.txt")),
    ("digest.html", include_str!("../templates/digest.html")),
];

/// A template that cannot be loaded or rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown template {0:?}")]
    Unknown(String),
    #[error("template {name:?}: {source}")]
    Invalid {
        name: String,
        #[source]
        source: minijinja::Error,
    },
    #[error("cannot read KILN_EMAIL_TEMPLATES: {0}")]
    Io(#[from] std::io::Error),
}

/// A rendered email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// The loaded templates; cheap to clone.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The built-ins plus the templates in `dir` (which may replace a built-in of the same
    /// name). Every template is parsed now, so a broken one stops start-up, not an email.
    pub fn load(dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in BUILT_IN {
            env.add_template(name, source)
                .map_err(|source| invalid(name, source))?;
        }
        if let Some(dir) = dir {
            for entry in std::fs::read_dir(dir)? {
                let path = entry?.path();
                let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                    continue;
                };
                let part = file.rsplit_once('.').map(|(_, ext)| ext);
                if !matches!(part, Some("subject" | "txt" | "html")) {
                    continue;
                }
                let source = std::fs::read_to_string(&path)?;
                env.add_template_owned(file.to_owned(), source)
                    .map_err(|source| invalid(file, source))?;
            }
        }
        Ok(Self { env: Arc::new(env) })
    }

    /// Only the built-ins.
    pub fn built_in() -> Self {
        Self::load(None).unwrap_or_else(|error| unreachable!("built-in templates parse: {error}"))
    }

    /// Renders template `name` with `data`. Line breaks in the subject become spaces, so data
    /// can never inject a header.
    pub fn render(&self, name: &str, data: &impl Serialize) -> Result<Rendered, TemplateError> {
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        let subject = self
            .env
            .get_template(&format!("{name}.subject"))
            .ok()
            .filter(|_| valid_name)
            .ok_or_else(|| TemplateError::Unknown(name.to_owned()))?;
        let part = |ext: &str| -> Result<Option<String>, TemplateError> {
            let file = format!("{name}.{ext}");
            match self.env.get_template(&file) {
                Ok(template) => template
                    .render(data)
                    .map(Some)
                    .map_err(|source| invalid(&file, source)),
                Err(_) => Ok(None),
            }
        };
        let subject = subject
            .render(data)
            .map_err(|source| invalid(&format!("{name}.subject"), source))?;
        let subject = subject
            .split(|c: char| c.is_control())
            .filter(|s| !s.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let (text, html) = (part("txt")?, part("html")?);
        if text.is_none() && html.is_none() {
            return Err(TemplateError::Unknown(name.to_owned()));
        }
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }
}

fn invalid(name: &str, source: minijinja::Error) -> TemplateError {
    TemplateError::Invalid {
        name: name.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn built_ins_render_and_escape_html() {
        let templates = Templates::built_in();
        let rendered = templates
            .render(
                "media_failed",
                &json!({
                    "base_url": "https://kiln.example",
                    "media": {"id": "m1", "error": "<b>corrupt</b>\r\nBcc: x@example.com"}
                }),
            )
            .expect("renders");
        assert_eq!(rendered.subject, "Your image could not be processed");
        let html = rendered.html.expect("html part");
        assert!(html.contains("&lt;b&gt;corrupt"), "{html}");
        assert!(rendered.text.expect("text part").contains("<b>corrupt</b>"));
    }

    #[test]
    fn missing_data_and_unknown_names_are_errors() {
        let templates = Templates::built_in();
        let error = templates
            .render("media_ready", &json!({"base_url": ""}))
            .expect_err("media is undefined");
        assert!(error.to_string().contains("media_ready"), "{error}");
        assert!(matches!(
            templates.render("nope", &json!({})),
            Err(TemplateError::Unknown(_))
        ));
        assert!(matches!(
            templates.render("../media_ready", &json!({})),
            Err(TemplateError::Unknown(_))
        ));
    }

    #[test]
    fn operator_templates_are_loaded_and_subjects_stay_one_line() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("welcome.subject"), "Hi {{ name }}\n").expect("write");
        std::fs::write(dir.path().join("welcome.txt"), "Welcome, {{ name }}!").expect("write");
        let templates = Templates::load(Some(dir.path())).expect("loads");
        let rendered = templates
            .render("welcome", &json!({"name": "Ann\r\nBcc: x@example.com"}))
            .expect("renders");
        assert_eq!(rendered.subject, "Hi Ann Bcc: x@example.com");
        assert_eq!(
            rendered.text.as_deref(),
            Some("Welcome, Ann\r\nBcc: x@example.com!")
        );
        assert_eq!(rendered.html, None);
    }
}
