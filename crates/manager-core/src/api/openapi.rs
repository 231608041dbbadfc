//! The OpenAPI 3.1 document, generated from the route table so that it can
//! never miss a route.

use axum::Json;
use serde_json::{Map, Value, json};

use super::{API_PREFIX, ApiError, Endpoint, openapi_document};

pub(crate) async fn serve_document() -> Json<Value> {
    Json(openapi_document())
}

/// The request body schemas, by name.
fn request_schemas() -> Value {
    json!({
        "LoginRequest": {
            "type": "object", "required": ["login", "password"], "additionalProperties": false,
            "properties": {
                "login": {"type": "string", "description": "Username or e-mail address"},
                "password": {"type": "string"}
            }
        },
        "CreateTokenRequest": {
            "type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string", "description": "A label, such as `laptop`"}}
        },
        "CreateAppRequest": {
            "type": "object", "required": ["slug"], "additionalProperties": false,
            "properties": {
                "slug": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
                "name": {"type": "string", "description": "Display name; defaults to the slug"}
            }
        },
        "UpdateAppRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "name": {"type": "string"},
                "settings": {"type": "object"}
            }
        },
        "DeployRequest": {
            "description": "As `application/json`; any other content type (such as `text/plain`) is the source itself",
            "type": "object", "required": ["source"], "additionalProperties": false,
            "properties": {"source": {"type": "string", "description": "The Rhai source"}}
        },
        "RollbackRequest": {
            "type": "object", "required": ["version"], "additionalProperties": false,
            "properties": {"version": {"type": "integer", "minimum": 1}}
        },
        "AddDomainRequest": {
            "type": "object", "required": ["host"], "additionalProperties": false,
            "properties": {"host": {"type": "string", "description": "A host name without port or scheme"}}
        },
        "AddMemberRequest": {
            "type": "object", "required": ["user", "role"], "additionalProperties": false,
            "properties": {
                "user": {"type": ["integer", "string"], "description": "A user id, a username, or an e-mail address (a string with `@`)"},
                "role": {"type": "string", "enum": ["viewer", "editor", "app_admin"]}
            }
        },
        "MemberLookupRequest": {
            "type": "object", "required": ["query"], "additionalProperties": false,
            "properties": {"query": {"type": "string", "description": "An exact username or e-mail address"}}
        },
        "UpdateMemberRequest": {
            "type": "object", "required": ["role"], "additionalProperties": false,
            "properties": {"role": {"type": "string", "enum": ["viewer", "editor", "app_admin"]}}
        },
        "CreateUserRequest": {
            "type": "object", "required": ["username", "email", "password"], "additionalProperties": false,
            "properties": {
                "username": {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,62}$"},
                "email": {"type": "string"},
                "password": {"type": "string", "minLength": super::accounts::MIN_PASSWORD_CHARS},
                "instance_role": {"type": "string", "enum": ["owner", "admin", "member"], "default": "member"}
            }
        },
        "UpdateUserRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "instance_role": {"type": "string", "enum": ["owner", "admin", "member"]},
                "active": {"type": "boolean"}
            }
        },
        "CreateScheduleRequest": {
            "type": "object", "required": ["script", "cron"], "additionalProperties": false,
            "properties": {
                "script": {"type": "string", "description": "A script of the app"},
                "cron": {"type": "string", "description": "Five cron fields, or @yearly, @monthly, @weekly, @daily, @hourly"},
                "timezone": {"type": "string", "description": "An IANA time zone; default UTC"},
                "payload": {"description": "Any JSON value, sent as each run's body"},
                "enabled": {"type": "boolean", "default": true}
            }
        },
        "UpdateScheduleRequest": {
            "type": "object", "additionalProperties": false,
            "properties": {
                "script": {"type": "string"},
                "cron": {"type": "string"},
                "timezone": {"type": "string"},
                "payload": {"description": "Any JSON value; null removes the payload"},
                "enabled": {"type": "boolean"}
            }
        },
        "SetValueRequest": {
            "type": "object", "required": ["value"], "additionalProperties": false,
            "properties": {"value": {"type": "string", "description": "A variable's value, or a secret (never returned)"}}
        },
        "HttpAllowlistRequest": {
            "type": "object", "required": ["hosts"], "additionalProperties": false,
            "properties": {"hosts": {"type": "array", "items": {"type": "string"}, "description": "`host`, `host:port` or `*.domain` patterns"}}
        },
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {
                "error": {
                    "type": "object", "required": ["code", "message"],
                    "properties": {
                        "code": {"type": "string", "enum": ApiError::CODES},
                        "message": {"type": "string"},
                        "field": {"type": "string", "description": "For `invalid_input`: the field that was refused"},
                        "line": {"type": ["integer", "null"], "description": "For `compile_error`"},
                        "column": {"type": ["integer", "null"], "description": "For `compile_error`"},
                        "permission": {"type": "string", "description": "For `forbidden`: the missing permission"}
                    }
                }
            }
        }
    })
}

/// Builds the document for `endpoints`.
pub(crate) fn document(endpoints: &[Endpoint]) -> Value {
    let mut paths = Map::new();
    for endpoint in endpoints {
        let parameters: Vec<Value> = endpoint
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let mut responses = Map::new();
        let status = endpoint.success_status.to_string();
        responses.insert(status, json!({"description": "Success"}));
        responses.insert(
            "default".into(),
            json!({
                "description": "An error, with a stable code",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
            }),
        );
        let mut operation = json!({
            "summary": endpoint.summary,
            "operationId": format!("{}{}", endpoint.method.to_lowercase(), endpoint.path.replace(['/', '{', '}', '.'], "_")),
            "tags": [endpoint.tag],
            "parameters": parameters,
            "responses": responses,
        });
        if !endpoint.authenticated {
            operation["security"] = json!([]);
        }
        if let Some(schema) = endpoint.request_body {
            let reference = json!({"schema": {"$ref": format!("#/components/schemas/{schema}")}});
            let mut content = Map::new();
            content.insert("application/json".into(), reference);
            if schema == "DeployRequest" {
                content.insert("text/plain".into(), json!({"schema": {"type": "string"}}));
            }
            operation["requestBody"] = json!({"required": true, "content": content});
        }
        let path_item = paths
            .entry(endpoint.full_path())
            .or_insert_with(|| json!({}));
        path_item[endpoint.method.to_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "PiCloud management API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Apps, scripts, versions, deploys, rollbacks, domains, API tokens, members, users and the audit log. See docs/api.md."
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerToken": []}, {"sessionCookie": []}],
        "paths": paths,
        "components": {
            "schemas": request_schemas(),
            "securitySchemes": {
                "bearerToken": {"type": "http", "scheme": "bearer", "description": "An API token, `pc_...`"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": super::SESSION_COOKIE,
                    "description": "A dashboard session; state-changing requests must also send `x-csrf-token`"}
            }
        },
        "x-api-prefix": API_PREFIX,
    })
}

#[cfg(test)]
mod tests {
    use super::super::endpoints;
    use super::*;

    #[test]
    fn every_route_and_body_schema_is_documented() {
        let document = openapi_document();
        let schemas = &document["components"]["schemas"];
        for endpoint in endpoints() {
            let operation =
                &document["paths"][endpoint.full_path()][endpoint.method.to_lowercase()];
            assert!(
                operation.is_object(),
                "{} {} is missing",
                endpoint.method,
                endpoint.path
            );
            if let Some(schema) = endpoint.request_body {
                assert!(schema_exists(schemas, schema), "schema {schema} is missing");
            }
        }
    }

    fn schema_exists(schemas: &Value, name: &str) -> bool {
        schemas.get(name).is_some_and(Value::is_object)
    }
}
