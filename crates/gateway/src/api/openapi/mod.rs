//! `GET /openapi.json`: the merchant API described as OpenAPI 3.1. A test reads every
//! `.route(…)` in `api/mod.rs` and fails if one is missing here, so the document cannot fall
//! behind the router.

use serde_json::{Value, json};

mod c2b;
mod refunds;

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

fn payment_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Payment"}}}})
}

/// Every form `Msisdn::parse` accepts: `07…`/`01…`, `2547…`/`2541…`, `+254…`, `00254…` or the
/// bare nine digits, with spaces and dashes anywhere (and spaces before a `+`).
const PHONE_PATTERN: &str =
    r"^ *(\+[ -]*2[ -]*5[ -]*4|[ -]*(0[ -]*0[ -]*2[ -]*5[ -]*4|2[ -]*5[ -]*4|0)?)[ -]*[17]([ -]*[0-9]){8}[ -]*$";
/// Characters Daraja shows in the prompt (`AccountReference`, `TransactionDesc`), not starting
/// or ending with a space (surrounding spaces are also accepted, and trimmed).
const PROMPT_TEXT_PATTERN: &str = "^[A-Za-z0-9_.#/-]([A-Za-z0-9 _.#/-]*[A-Za-z0-9_.#/-])?$";
/// 1 to 255 visible ASCII characters.
const IDEMPOTENCY_KEY_PATTERN: &str = "^[!-~]{1,255}$";

/// An optional request field: absent and `null` mean the same.
fn or_null(mut schema: Value) -> Value {
    let ty = schema["type"].take();
    schema["type"] = json!([ty, "null"]);
    schema
}

/// The document as `/openapi.json` serves it: built and serialised once, as it never changes
/// while the process runs (the route is open to anyone).
pub fn json() -> &'static str {
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    JSON.get_or_init(|| document().to_string())
}

/// The document.
pub fn document() -> Value {
    let mut doc = stk_and_payments();
    if let Some(paths) = doc["paths"].as_object_mut() {
        paths.extend(c2b::paths().as_object().cloned().unwrap_or_default());
        paths.extend(refunds::paths().as_object().cloned().unwrap_or_default());
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        schemas.insert("C2bTransaction".into(), c2b::transaction());
        schemas.insert("Refund".into(), refunds::refund());
        if let Some(props) = schemas.get_mut("Payment").and_then(|p| p["properties"].as_object_mut()) {
            props.insert(
                "refunded_amount".into(),
                json!({"type": "integer", "description": "Shillings refunded (the whole amount once a refund succeeded)"}),
            );
            props.insert(
                "refunds".into(),
                json!({"type": "array", "items": {"$ref": "#/components/schemas/Refund"}, "description": "Only in GET /v1/payments/{id}"}),
            );
        }
    }
    doc
}

/// The document without the C2B and refund paths.
fn stk_and_payments() -> Value {
    let paybill = json!({
        "type": ["object", "null"],
        "description": "How the customer can pay by hand (M-PESA menu, Pay Bill), while the payment can still be paid that way",
        "required": ["business_number", "account_number"],
        "properties": {
            "business_number": {"type": "string"},
            "account_number": {"type": "string", "pattern": "^[2-9A-HJ-NP-Z]{7}$"}
        }
    });
    let phone = json!({"type": "string", "pattern": PHONE_PATTERN, "description": "07…, 01…, +2547…, 2541…; spaces and dashes allowed"});
    let reference = json!({"type": "string", "minLength": 1, "maxLength": 12, "pattern": PROMPT_TEXT_PATTERN});
    let description = json!({"type": "string", "minLength": 1, "maxLength": 13, "pattern": PROMPT_TEXT_PATTERN, "description": "Shown in the prompt"});
    let callback_body = json!({
        "type": "object", "required": ["Body"], "properties": {"Body": {
            "type": "object", "required": ["stkCallback"], "properties": {"stkCallback": {
                "type": "object",
                "required": ["MerchantRequestID", "CheckoutRequestID", "ResultCode", "ResultDesc"],
                "properties": {
                    "MerchantRequestID": {"type": "string"},
                    "CheckoutRequestID": {"type": "string", "pattern": "^ws_CO_[0-9A-Za-z_]+$"},
                    "ResultCode": {"type": "integer"},
                    "ResultDesc": {"type": "string"},
                    "CallbackMetadata": {
                        "type": "object",
                        "description": "Required when ResultCode is 0: Amount, MpesaReceiptNumber, TransactionDate and PhoneNumber items",
                        "properties": {"Item": {"type": "array", "items": {
                            "type": "object", "required": ["Name"], "properties": {"Name": {"type": "string"}, "Value": {}}
                        }}}
                    }
                }
            }}
        }}
    });
    let idempotency_key = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}});
    let bearer = json!([{"apiKey": []}]);
    let id_param = json!({"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^pay_[0-9a-f]{24}$"}});
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Lipa merchant API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Take M-Pesa STK Push payments: create a payment, follow it to paid, failed or expired."
        },
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "An API key from `lipa keys create` (lipa_sk_…)"}},
            "schemas": {
                "CreatePayment": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["amount", "phone", "account_reference", "description"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 1, "maximum": 250000, "description": "Whole shillings"},
                        "phone": phone,
                        "account_reference": reference,
                        "description": description,
                        "metadata": or_null(json!({"type": "object", "description": "Returned as given; at most 4 KiB"})),
                        "webhook_url": or_null(json!({"type": "string", "format": "uri", "description": "http(s); a public address unless the gateway allows private ones (LIPA_WEBHOOK_ALLOW_PRIVATE)"})),
                        "customer_email": or_null(json!({"type": "string", "format": "email"}))
                    }
                },
                "CreateCheckoutSession": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["amount", "account_reference", "description", "success_url", "cancel_url"],
                    "properties": {
                        "amount": {"type": "integer", "minimum": 1, "maximum": 250000, "description": "Whole shillings"},
                        "account_reference": reference,
                        "description": description,
                        "success_url": {"type": "string", "format": "uri", "description": "After payment; `session_id` is added to its query"},
                        "cancel_url": {"type": "string", "format": "uri"},
                        "phone": or_null(phone.clone()),
                        "customer_email": or_null(json!({"type": "string", "format": "email"})),
                        "metadata": or_null(json!({"type": "object", "description": "Copied to the payments (with `checkout_session`)"})),
                        "webhook_url": or_null(json!({"type": "string", "format": "uri", "description": "http(s); a public address unless the gateway allows private ones (LIPA_WEBHOOK_ALLOW_PRIVATE)"}))
                    }
                },
                "CheckoutSession": {
                    "type": "object",
                    "required": ["id", "url", "amount", "account_reference", "description", "success_url", "cancel_url", "metadata", "created_at", "expires_at", "attempts"],
                    "properties": {
                        "id": {"type": "string", "pattern": "^cs_[0-9a-f]{32}$"},
                        "url": {"type": "string", "format": "uri", "description": "Send the customer here"},
                        "amount": {"type": "integer"},
                        "account_reference": {"type": "string"},
                        "description": {"type": "string"},
                        "success_url": {"type": "string"},
                        "cancel_url": {"type": "string"},
                        "phone": {"type": ["string", "null"]},
                        "customer_email": {"type": ["string", "null"]},
                        "webhook_url": {"type": ["string", "null"]},
                        "metadata": {"type": "object"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "expires_at": {"type": "string", "format": "date-time"},
                        "payment_id": {"type": ["string", "null"], "description": "The latest payment attempt"},
                        "payment_status": {"type": ["string", "null"], "enum": ["pending", "paid", "failed", "expired", null]},
                        "attempts": {"type": "integer"}
                    }
                },
                "Payment": {
                    "type": "object",
                    "required": ["id", "status", "amount", "phone", "account_reference", "description", "metadata", "needs_review", "created_at", "updated_at"],
                    "properties": {
                        "id": {"type": "string"},
                        "status": {"type": "string", "enum": ["pending", "paid", "failed", "expired"]},
                        "amount": {"type": "integer"},
                        "phone": {"type": "string", "pattern": "^254[17][0-9]{8}$"},
                        "account_reference": {"type": "string"},
                        "description": {"type": "string"},
                        "metadata": {"type": "object"},
                        "webhook_url": {"type": ["string", "null"]},
                        "customer_email": {"type": ["string", "null"]},
                        "merchant_request_id": {"type": ["string", "null"]},
                        "checkout_request_id": {"type": ["string", "null"]},
                        "receipt": {"type": ["string", "null"], "description": "M-Pesa receipt; null when only a query confirmed the payment"},
                        "transaction_date": {"type": ["string", "null"], "format": "date-time"},
                        "failure_reason": {"type": ["string", "null"], "enum": ["cancelled", "insufficient_funds", "wrong_pin", "pin_locked", "unreachable", "timeout", "limit_exceeded", "subscriber_busy", "merchant_configuration", "rejected_by_daraja", "system", null]},
                        "result_code": {"type": ["string", "null"]},
                        "result_desc": {"type": ["string", "null"]},
                        "settled_by": {"type": ["string", "null"], "enum": ["callback", "query", "push", "expiry", "c2b", null]},
                        "needs_review": {"type": "boolean"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "updated_at": {"type": "string", "format": "date-time"},
                        "settled_at": {"type": ["string", "null"], "format": "date-time"},
                        "amount_received": {"type": "integer", "description": "Shillings paid by hand (Paybill) so far; payments add up until they cover `amount`"},
                        "paybill": paybill
                    }
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
                        "code": {"type": "string"}, "message": {"type": "string"}, "field": {"type": "string"}
                    }}}
                }
            }
        },
        "paths": {
            "/v1/payments": {
                "post": {
                    "summary": "Create a payment and send the STK push",
                    "security": bearer,
                    "parameters": [idempotency_key],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreatePayment"}}}},
                    "responses": {
                        "201": payment_response("Created (or replayed by its idempotency key)"),
                        "400": error_response("Not JSON, or not this shape"),
                        "413": error_response("The body is larger than 64 KiB"),
                        "401": error_response("No valid API key"),
                        "409": error_response("idempotency_key_reused or phone_busy"),
                        "422": error_response("A field is invalid; `field` names it"),
                        "429": error_response("Rate limited; see Retry-After"),
                        "503": error_response("Storage unavailable; retry")
                    }
                },
                "get": {
                    "summary": "List payments, newest first",
                    "security": bearer,
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["pending", "paid", "failed", "expired"]}},
                        {"name": "phone", "in": "query", "schema": phone},
                        {"name": "reference", "in": "query", "schema": {"type": "string"}},
                        {"name": "receipt", "in": "query", "schema": {"type": "string"}},
                        {"name": "created_from", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "created_to", "in": "query", "schema": {"type": "string", "format": "date-time"}},
                        {"name": "cursor", "in": "query", "description": "`next_cursor` of the previous page", "schema": {"type": "string", "pattern": "^[0-9]{1,15}_pay_[0-9a-f]{24}$"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
                    ],
                    "responses": {
                        "200": {"description": "A page", "content": {"application/json": {"schema": {"type": "object", "properties": {
                            "data": {"type": "array", "items": {"$ref": "#/components/schemas/Payment"}},
                            "next_cursor": {"type": ["string", "null"]}
                        }}}}},
                        "400": error_response("Unknown query parameter"),
                        "401": error_response("No valid API key"),
                        "422": error_response("A filter is invalid")
                    }
                }
            },
            "/v1/payments/{id}": {
                "get": {
                    "summary": "One payment",
                    "security": bearer,
                    "parameters": [id_param.clone()],
                    "responses": {"200": payment_response("The payment"), "401": error_response("No valid API key"), "404": error_response("No such payment for this key")}
                }
            },
            "/v1/payments/{id}/timeline": {
                "get": {
                    "summary": "A payment's timeline: created, push, callbacks, queries, expiry",
                    "security": bearer,
                    "parameters": [id_param],
                    "responses": {
                        "200": {"description": "Events, oldest first", "content": {"application/json": {"schema": {"type": "object", "properties": {"events": {"type": "array", "items": {"type": "object", "properties": {
                            "at": {"type": "string", "format": "date-time"}, "kind": {"type": "string"}, "detail": {"type": "object"}
                        }}}}}}}},
                        "401": error_response("No valid API key"),
                        "404": error_response("No such payment for this key")
                    }
                }
            },
            "/v1/payments/{id}/webhooks": {
                "get": {
                    "summary": "A payment's webhook events and every delivery attempt",
                    "security": bearer,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "Events with attempts", "content": {"application/json": {"schema": {"type": "object"}}}},
                        "401": error_response("No valid API key"),
                        "404": error_response("No such payment for this key")
                    }
                }
            },
            "/v1/payments/{id}/events": {
                "get": {
                    "summary": "Follow a payment live (server-sent events: `payment` events until it is final; a failed payment that can still be paid by Paybill may yet turn paid)",
                    "security": bearer,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "text/event-stream of `payment` events, each carrying the payment as JSON"},
                        "401": error_response("No valid API key"),
                        "404": error_response("No such payment for this key")
                    }
                }
            },
            "/v1/webhook-events/{id}/redeliver": {
                "post": {
                    "summary": "Send a webhook event again (same event id, new attempt)",
                    "security": bearer,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^evt_[0-9a-f]{24}$"}}],
                    "responses": {
                        "202": {"description": "Queued for delivery"},
                        "401": error_response("No valid API key"),
                        "404": error_response("No such event for this key")
                    }
                }
            },
            "/v1/checkout-sessions": {
                "post": {
                    "summary": "Create a hosted checkout session; redirect the customer to its `url`",
                    "security": bearer,
                    "parameters": [idempotency_key],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateCheckoutSession"}}}},
                    "responses": {
                        "201": {"description": "Created (or replayed by its idempotency key)", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutSession"}}}},
                        "400": error_response("Not JSON, or not this shape"),
                        "413": error_response("The body is larger than 64 KiB"),
                        "401": error_response("No valid API key"),
                        "409": error_response("idempotency_key_reused"),
                        "422": error_response("A field is invalid; `field` names it"),
                        "503": error_response("Storage unavailable; retry")
                    }
                }
            },
            "/v1/checkout-sessions/{id}": {
                "get": {
                    "summary": "A checkout session with its latest payment's status",
                    "security": bearer,
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {
                        "200": {"description": "The session", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CheckoutSession"}}}},
                        "401": error_response("No valid API key"),
                        "404": error_response("No such session for this key")
                    }
                }
            },
            "/callbacks/stk/{token}": {
                "post": {
                    "summary": "Safaricom's STK callback (not for merchants)",
                    "parameters": [{"name": "token", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                    "requestBody": {"required": true, "content": {"application/json": {"schema": callback_body}}},
                    "responses": {
                        "200": {"description": "Stored and applied: {\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"},
                        "400": {"description": "Not an STK callback (stored for review)"},
                        "403": error_response("Source address refused by the allowlist"),
                        "404": error_response("Not a callback token"),
                        "413": {"description": "Body over 64 KiB"},
                        "503": error_response("Not stored; send it again")
                    }
                }
            },
            "/": {"get": {"summary": "A page for people: what this is, links to the admin dashboard, this document and health, and every operation", "responses": {"200": {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "ok"}}}},
            "/readyz": {"get": {"summary": "Database reachable", "responses": {"200": {"description": "ready"}, "503": error_response("Database unavailable")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "Text exposition format"}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}}
        }
    })
}
