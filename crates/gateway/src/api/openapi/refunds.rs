//! The OpenAPI paths and schema of refunds.

use serde_json::{Value, json};

use super::{IDEMPOTENCY_KEY_PATTERN, error_response};

fn refund_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Refund"}}}})
}

/// `POST /v1/payments/{id}/refunds`, `GET /v1/refunds/{id}` and the refund result URLs.
pub(super) fn paths() -> Value {
    let bearer = json!([{"apiKey": []}]);
    let idempotency_key = json!({"name": "Idempotency-Key", "in": "header", "required": false, "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN}});
    json!({
        "/v1/payments/{id}/refunds": {
            "post": {
                "summary": "Refund a paid payment, whole, once (M-Pesa Reversal; the result follows as refund.succeeded or refund.failed)",
                "security": bearer,
                "parameters": [
                    {"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^pay_[0-9a-f]{24}$"}},
                    idempotency_key
                ],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["reason"],
                    "properties": {
                        "reason": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S", "description": "Why; kept with the refund and sent as the reversal's remarks (line breaks become spaces)"},
                        "amount": {"type": ["integer", "null"], "minimum": 0, "maximum": 250000, "description": "Leave out: only the payment's whole amount can be reversed (a part needs B2C, which Lipa does not do)"}
                    }
                }}}},
                "responses": {
                    "201": refund_response("Taken (status pending); the same answer again for the same Idempotency-Key"),
                    "400": error_response("The body is not JSON of this shape"),
                    "401": error_response("No valid API key"),
                    "404": error_response("No such payment for this key"),
                    "409": error_response("Cannot be refunded: payment_not_paid, payment_has_no_receipt, refund_in_progress, payment_already_refunded, partial_refund_unsupported (an amount that is not the whole), refunds_not_configured, idempotency_key_reused"),
                    "422": error_response("A field is invalid; `field` names it"),
                    "503": error_response("Storage unavailable; retry")
                }
            }
        },
        "/v1/refunds/{id}": {
            "get": {
                "summary": "One refund",
                "security": bearer,
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "pattern": "^re_[0-9a-f]{24}$"}}],
                "responses": {"200": refund_response("The refund"), "401": error_response("No valid API key"), "404": error_response("No such refund for this key")}
            }
        },
        "/callbacks/receipt-check/{token}/{kind}": {
            "post": {
                "summary": "Daraja's Transaction Status answer about a receipt check, or its queue timeout (not for merchants)",
                "parameters": [
                    {"name": "token", "in": "path", "required": true, "description": "The check's secret", "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
                    {"name": "kind", "in": "path", "required": true, "schema": {"type": "string", "enum": ["result", "timeout"]}}
                ],
                "responses": {
                    "200": {"description": "Stored and applied: {\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"},
                    "403": error_response("Source address refused by the allowlist"),
                    "404": error_response("No check has this secret (nothing stored)"),
                    "413": {"description": "Body over 64 KiB"},
                    "503": error_response("Not stored; send it again")
                }
            }
        },
        "/callbacks/refund/{token}/{kind}": {
            "post": {
                "summary": "Daraja's answer about a refund's reversal: its result, a queue timeout, or a Transaction Status answer (not for merchants)",
                "parameters": [
                    {"name": "token", "in": "path", "required": true, "description": "The refund's secret", "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}},
                    {"name": "kind", "in": "path", "required": true, "schema": {"type": "string", "enum": ["result", "timeout", "status", "status-timeout"]}}
                ],
                "responses": {
                    "200": {"description": "Stored and applied: {\"ResultCode\":0,\"ResultDesc\":\"Accepted\"}"},
                    "403": error_response("Source address refused by the allowlist"),
                    "404": error_response("No refund has this secret (nothing stored)"),
                    "413": {"description": "Body over 64 KiB"},
                    "503": error_response("Not stored; send it again")
                }
            }
        }
    })
}

/// A refund, as the API shows it.
pub(super) fn refund() -> Value {
    json!({
        "type": "object",
        "required": ["id", "payment_id", "amount", "status", "reason", "needs_review", "requested_by", "created_at", "updated_at"],
        "properties": {
            "id": {"type": "string", "pattern": "^re_[0-9a-f]{24}$"},
            "payment_id": {"type": "string"},
            "amount": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "succeeded", "failed"]},
            "reason": {"type": "string"},
            "receipt": {"type": ["string", "null"], "description": "The reversal's own M-Pesa receipt"},
            "result_code": {"type": ["string", "null"], "description": "Daraja's code: 0, R000001 (reversed before), R000002 (unknown), 21 (initiator lacks the role), …"},
            "result_desc": {"type": ["string", "null"]},
            "needs_review": {"type": "boolean"},
            "requested_by": {"type": "string", "description": "api, or admin:<user>"},
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "settled_at": {"type": ["string", "null"], "format": "date-time"}
        }
    })
}
