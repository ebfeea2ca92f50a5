//! `-o json|yaml` for the commands that report (`status`, `parked`, `trace`, `validate`): one
//! document on standard output, in the schema `docs/cli.md` gives. Where a command wraps the admin
//! API, the document is the API's answer as the node sent it, so a script reads the same fields
//! from the CLI and from `/-/...`.

use clap::{Args, ValueEnum};
use serde_json::Value;

/// How a command prints what it found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Lines for people (the default).
    #[default]
    Text,
    /// One JSON document.
    Json,
    /// The same document as YAML.
    Yaml,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct OutputArgs {
    /// Output format: text for people, json or yaml for scripts (the fields are in docs/cli.md).
    #[arg(
        short = 'o',
        long = "output",
        value_enum,
        default_value = "text",
        global = true
    )]
    output: Format,
    /// Same as -o json.
    #[arg(long, global = true, conflicts_with = "output")]
    json: bool,
}

impl OutputArgs {
    pub(crate) fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }

    /// Prints `document` as JSON or YAML and says `true`; says `false` for text, which is the
    /// command's own to print.
    pub(crate) fn print_document(&self, document: &Value) -> anyhow::Result<bool> {
        match self.format() {
            Format::Text => Ok(false),
            format => {
                print!("{}", render(document, format)?);
                Ok(true)
            }
        }
    }
}

/// `document` as pretty JSON (with a final newline) or YAML.
pub(crate) fn render(document: &Value, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json | Format::Text => format!("{}\n", serde_json::to_string_pretty(document)?),
        Format::Yaml => serde_yaml::to_string(document)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_keeps_the_json_fields_in_their_order() {
        let document = json!({"role": "all", "ready": true, "brokers": [{"name": "default"}]});
        assert_eq!(
            render(&document, Format::Yaml).unwrap(),
            "role: all\nready: true\nbrokers:\n- name: default\n"
        );
        assert_eq!(
            render(&document, Format::Json).unwrap(),
            "{\n  \"role\": \"all\",\n  \"ready\": true,\n  \"brokers\": [\n    {\n      \"name\": \"default\"\n    }\n  ]\n}\n"
        );
    }
}
