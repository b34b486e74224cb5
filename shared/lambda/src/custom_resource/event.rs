//! The event, read as `aws_lambda_events`' CloudFormation request. One that does not read as
//! one but names a request type or a response URL is a malformed custom-resource event: what
//! its answer needs is read from it loosely, so that it can still be answered FAILED.

use aws_lambda_events::event::cloudformation::{CreateRequest, DeleteRequest, UpdateRequest};
use serde::Deserialize;
use serde_json::Value;

/// The properties as the request carries them: checked on Create and Update only
/// (`apply`), so that a Delete succeeds whatever they hold; Update's old properties are not
/// read, nor required.
type Properties = Option<Value>;

/// The resource's properties in the template that the function reads (CloudFormation adds
/// `ServiceToken` and `ServiceTimeout`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Versions {
    /// The migration versions: a new migration changes them, so CloudFormation sends an Update.
    versions: Vec<String>,
}

/// A custom-resource event: what to do, and what the answer needs. (No `Debug`: its response
/// URL is a credential.)
pub struct Event {
    pub(super) ids: Ids,
    pub(super) action: Action,
}

/// Where the answer goes and what it repeats, as the event gives them (empty when a malformed
/// event lacks one).
pub(super) struct Ids {
    pub(super) response_url: String,
    pub(super) stack_id: String,
    pub(super) request_id: String,
    pub(super) logical_resource_id: String,
    /// `None` on Create, and when a malformed event has none.
    pub(super) physical_resource_id: Option<String>,
}

#[derive(Debug)]
pub(super) enum Action {
    /// Create or Update: apply the migrations, the template listing these versions.
    Apply(Vec<String>),
    Delete,
    /// What is wrong with the event: a field's name, never its value.
    Malformed(String),
}

impl Event {
    /// The custom-resource event `payload` is, or `None` when it is none (a schedule's event,
    /// `{}`): a payload that neither reads as CloudFormation's request nor has a `RequestType`
    /// or a `ResponseURL`.
    pub fn of(payload: &Value) -> Option<Event> {
        // The request of the type `RequestType` names, read straight from the payload (the
        // enum's own internally tagged Deserialize copies the whole event first, which costs
        // 26 KB of code in the binary).
        let typed = match payload.get("RequestType").and_then(Value::as_str) {
            Some("Create") => {
                CreateRequest::<Properties>::deserialize(payload)
                    .ok()
                    .map(|create| {
                        let ids = Ids {
                            response_url: create.response_url,
                            stack_id: create.stack_id,
                            request_id: create.request_id,
                            logical_resource_id: create.logical_resource_id,
                            physical_resource_id: None,
                        };
                        (ids, apply(create.resource_properties))
                    })
            }
            Some("Update") => UpdateRequest::<Properties, Properties>::deserialize(payload)
                .ok()
                .map(|update| {
                    let ids = Ids {
                        response_url: update.response_url,
                        stack_id: update.stack_id,
                        request_id: update.request_id,
                        logical_resource_id: update.logical_resource_id,
                        physical_resource_id: Some(update.physical_resource_id),
                    };
                    (ids, apply(update.resource_properties))
                }),
            Some("Delete") => {
                DeleteRequest::<Properties>::deserialize(payload)
                    .ok()
                    .map(|delete| {
                        let ids = Ids {
                            response_url: delete.response_url,
                            stack_id: delete.stack_id,
                            request_id: delete.request_id,
                            logical_resource_id: delete.logical_resource_id,
                            physical_resource_id: Some(delete.physical_resource_id),
                        };
                        (ids, Action::Delete)
                    })
            }
            _ => None,
        };
        let (ids, action) = match typed {
            Some(typed) => typed,
            // Not a request as CloudFormation sends it (or of a type this build does not know).
            None => {
                let named = |field| payload.get(field).is_some();
                if !named("RequestType") && !named("ResponseURL") {
                    return None;
                }
                (Ids::loose(payload), Action::Malformed(problem(payload)))
            }
        };
        Some(Event { ids, action })
    }
}

impl Ids {
    /// The fields as `payload` has them, where it has them as strings.
    fn loose(payload: &Value) -> Ids {
        let field = |name| payload.get(name).and_then(Value::as_str).map(str::to_owned);
        Ids {
            response_url: field("ResponseURL").unwrap_or_default(),
            stack_id: field("StackId").unwrap_or_default(),
            request_id: field("RequestId").unwrap_or_default(),
            logical_resource_id: field("LogicalResourceId").unwrap_or_default(),
            physical_resource_id: field("PhysicalResourceId"),
        }
    }
}

/// Create or Update with `properties`: the migrations to apply, or what is wrong with them.
fn apply(properties: Properties) -> Action {
    let properties = properties.unwrap_or_default();
    match Versions::deserialize(&properties) {
        Ok(properties) => Action::Apply(properties.versions),
        Err(_) => Action::Malformed(
            "ResourceProperties.Versions must be a list of migration versions".to_owned(),
        ),
    }
}

/// What makes `payload` other than the request CloudFormation sends, in the request type's
/// terms: the first field found wrong, by name. (serde's own messages can quote the value.)
fn problem(payload: &Value) -> String {
    let request_type = payload.get("RequestType").and_then(Value::as_str);
    let Some(request_type @ ("Create" | "Update" | "Delete")) = request_type else {
        return "RequestType must be Create, Update or Delete".to_owned();
    };
    let mut strings = vec![
        "RequestId",
        "ResponseURL",
        "StackId",
        "ResourceType",
        "LogicalResourceId",
    ];
    if request_type != "Create" {
        strings.push("PhysicalResourceId");
    }
    let not_string = |field: &&str| !payload.get(field).is_some_and(Value::is_string);
    if let Some(field) = strings.into_iter().find(not_string) {
        return format!("{field} must be a string");
    }
    if payload
        .get("ServiceToken")
        .is_some_and(|token| !token.is_string() && !token.is_null())
    {
        return "ServiceToken must be a string".to_owned();
    }
    "it is not a custom-resource request as CloudFormation sends it".to_owned()
}
