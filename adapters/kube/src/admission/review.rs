//! `admission.k8s.io/v1` AdmissionReview on the wire: the request the API server sends, the
//! response it expects. Only the fields knactor reads are kept; a body that is not a review (or
//! not a `v1` one) is refused with the field that is wrong, never guessed at.

use base64::Engine as _;
use kube::api::DynamicObject;
use serde::Deserialize;
use serde_json::{json, Value};

/// The only version knactor answers; the webhook configurations ask for it
/// (`admissionReviewVersions: [v1]`).
pub const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// Why a body is not a review knactor can answer (the HTTP answer is 400 with this text).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an {API_VERSION} {KIND}: {0}")]
pub struct BadReview(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct GroupVersionKind {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub version: String,
    pub kind: String,
}

/// `request` of a review.
#[derive(Debug, Clone)]
pub struct Request {
    pub uid: String,
    pub kind: GroupVersionKind,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub object: Option<DynamicObject>,
    pub old_object: Option<DynamicObject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReview {
    api_version: String,
    kind: String,
    request: Option<WireRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireRequest {
    uid: String,
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
}

/// Reads a review's body.
pub fn parse(body: &[u8]) -> Result<Request, BadReview> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let review: WireReview =
        serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let problem = error.into_inner();
            if path == "." {
                BadReview(problem.to_string())
            } else {
                BadReview(format!("{path}: {problem}"))
            }
        })?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(BadReview(format!(
            "apiVersion {:?} and kind {:?}: knactor answers {API_VERSION} {KIND} only",
            review.api_version, review.kind
        )));
    }
    let request = review
        .request
        .ok_or_else(|| BadReview("request: required".into()))?;
    if request.uid.is_empty() {
        return Err(BadReview("request.uid: required".into()));
    }
    let object = |value: Option<Value>, field: &str| -> Result<Option<DynamicObject>, BadReview> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(value) => serde_path_to_error::deserialize(value)
                .map(Some)
                .map_err(|error| {
                    BadReview(format!(
                        "request.{field}.{}: {}",
                        error.path(),
                        error.inner()
                    ))
                }),
        }
    };
    let parsed = Request {
        uid: request.uid,
        kind: request.kind,
        namespace: request.namespace.filter(|ns| !ns.is_empty()),
        operation: request.operation,
        object: object(request.object, "object")?,
        old_object: object(request.old_object, "oldObject")?,
    };
    match parsed.operation {
        Operation::Create | Operation::Update if parsed.object.is_none() => Err(BadReview(
            "request.object: required for CREATE and UPDATE".into(),
        )),
        Operation::Update if parsed.old_object.is_none() => {
            Err(BadReview("request.oldObject: required for UPDATE".into()))
        }
        _ => Ok(parsed),
    }
}

/// What knactor answers to one request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answer {
    /// `None`: allowed; else the one-line reason of the refusal.
    pub refusal: Option<String>,
    /// JSON patch operations (RFC 6902) to apply to the object.
    pub patch: Vec<Value>,
    pub warnings: Vec<String>,
}

impl Answer {
    pub fn allow() -> Self {
        Self::default()
    }

    pub fn refuse(reason: impl Into<String>) -> Self {
        Self {
            refusal: Some(reason.into()),
            ..Self::default()
        }
    }

    /// The review the API server reads back.
    pub fn into_review(self, uid: &str) -> Value {
        let mut response = json!({"uid": uid, "allowed": self.refusal.is_none()});
        if let Some(reason) = self.refusal {
            // 400: the object is what is wrong; the API server hands the message to the client.
            response["status"] = json!({"code": 400, "reason": "BadRequest", "message": reason});
        } else if !self.patch.is_empty() {
            let patch = Value::Array(self.patch).to_string();
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(patch));
        }
        if !self.warnings.is_empty() {
            response["warnings"] = json!(self.warnings);
        }
        json!({"apiVersion": API_VERSION, "kind": KIND, "response": response})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(request: Value) -> Vec<u8> {
        json!({"apiVersion": API_VERSION, "kind": KIND, "request": request})
            .to_string()
            .into_bytes()
    }

    fn create(object: Value) -> Value {
        json!({"uid": "u-1", "kind": {"group": "eventing.knative.dev", "version": "v1", "kind": "Trigger"},
               "namespace": "team-a", "operation": "CREATE", "object": object})
    }

    #[test]
    fn a_create_review_is_read_with_its_object() {
        let request = parse(&review(create(json!({
            "apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": "t", "namespace": "team-a"}, "spec": {"broker": "default"}
        }))))
        .unwrap();
        assert_eq!(request.uid, "u-1");
        assert_eq!(request.operation, Operation::Create);
        assert_eq!(request.kind.kind, "Trigger");
        assert_eq!(request.namespace.as_deref(), Some("team-a"));
        let object = request.object.unwrap();
        assert_eq!(object.data["spec"]["broker"], "default");
    }

    #[test]
    fn bodies_that_are_not_v1_reviews_are_refused_naming_what_is_wrong() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "expected ident"),
            (b"[]".to_vec(), "expected struct WireReview"),
            (
                json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": KIND, "request": create(json!({}))})
                    .to_string()
                    .into_bytes(),
                "knactor answers admission.k8s.io/v1 AdmissionReview only",
            ),
            (
                json!({"apiVersion": API_VERSION, "kind": KIND})
                    .to_string()
                    .into_bytes(),
                "request: required",
            ),
            (
                review(json!({"uid": "u", "kind": {"kind": "Trigger"}, "operation": "PATCH"})),
                "request.operation: unknown variant `PATCH`",
            ),
            (
                review(json!({"uid": "u", "kind": {"kind": "Trigger"}, "operation": "CREATE"})),
                "request.object: required for CREATE and UPDATE",
            ),
            (
                review(json!({"uid": "u", "kind": {"kind": "Trigger"}, "operation": "UPDATE",
                              "object": {"apiVersion": "v1", "kind": "X", "metadata": {}}})),
                "request.oldObject: required for UPDATE",
            ),
            (
                review(json!({"uid": "u", "kind": {"kind": "Trigger"}, "operation": "CREATE",
                              "object": {"apiVersion": "v1", "kind": "X", "metadata": {"name": 3}}})),
                "request.object.metadata.name: invalid type: integer `3`",
            ),
            (
                review(json!({"uid": "", "kind": {"kind": "Trigger"}, "operation": "DELETE"})),
                "request.uid: required",
            ),
        ];
        for (body, expected) in cases {
            let error = parse(&body).unwrap_err().to_string();
            assert!(
                error.starts_with("not an admission.k8s.io/v1 AdmissionReview: ")
                    && error.contains(expected),
                "{error} (expected {expected:?})"
            );
        }
    }

    #[test]
    fn a_refusal_carries_its_reason_and_an_allowance_its_patch() {
        let refused = Answer::refuse("Trigger a/b: spec.broker: required").into_review("u");
        assert_eq!(refused["response"]["allowed"], false);
        assert_eq!(refused["response"]["uid"], "u");
        assert_eq!(
            refused["response"]["status"]["message"],
            "Trigger a/b: spec.broker: required"
        );
        assert!(refused["response"].get("patch").is_none());

        let patched = Answer {
            patch: vec![json!({"op": "add", "path": "/spec/filter", "value": {}})],
            ..Answer::allow()
        }
        .into_review("u");
        assert_eq!(patched["response"]["allowed"], true);
        assert_eq!(patched["response"]["patchType"], "JSONPatch");
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(patched["response"]["patch"].as_str().unwrap())
            .unwrap();
        let ops: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(ops[0]["path"], "/spec/filter");
        assert_eq!(patched["apiVersion"], API_VERSION);
    }
}
