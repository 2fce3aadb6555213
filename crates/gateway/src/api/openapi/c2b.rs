//! The OpenAPI paths and schema of payments by hand (Paybill, Till).

use serde_json::{Value, json};

/// The paths of payments by hand (Paybill, Till).
pub(super) fn paths() -> Value {
    let bearer = json!([{"apiKey": []}]);
    json!({
            "/v1/c2b-transactions": {
                "get": {
                    "summary": "List payments made by hand (Paybill, Till), newest first",
                    "security": bearer,
                    "parameters": [
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["applied", "same_as_stk", "unmatched", "assigned", "refunded_outside"]}},
                        {"name": "cursor", "in": "query", "description": "`next_cursor` of the previous page", "schema": {"type": "string", "pattern": "^[0-9]{1,15}_[0-9A-Za-z]{1,64}$"}},
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}}
                    ],
                    "responses": {
                        "200": {"description": "A page", "content": {"application/json": {"schema": {
                            "type": "object", "required": ["data", "next_cursor"],
                            "properties": {
                                "data": {"type": "array", "items": {"$ref": "#/components/schemas/C2bTransaction"}},
                                "next_cursor": {"type": ["string", "null"]}
                            }
                        }}}},
                        "400": super::error_response("Not a query this endpoint takes"),
                        "401": super::error_response("No valid API key"),
                        "422": super::error_response("A filter is invalid; `field` names it")
                    }
                }
            },
            "/callbacks/c2b/{token}/confirmation": {
                "post": {
                    "summary": "Daraja's C2B confirmation: a customer paid by hand (not for merchants)",
                    "parameters": [{"name": "token", "in": "path", "required": true, "description": "This installation's secret", "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                    "responses": {
                        "200": {"description": "Stored and applied: {\"ResultCode\":0,\"ResultDesc\":\"Success\"}"},
                        "400": {"description": "Not a C2B payment (stored for review)"},
                        "403": super::error_response("Source address refused by the allowlist"),
                        "404": super::error_response("Not this installation's C2B path"),
                        "413": {"description": "Body over 64 KiB"},
                        "503": super::error_response("Not stored; send it again")
                    }
                }
            },
            "/callbacks/c2b/{token}/validation": {
                "post": {
                    "summary": "Daraja's C2B validation: accept or refuse before the money moves (not for merchants)",
                    "parameters": [{"name": "token", "in": "path", "required": true, "description": "This installation's secret", "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"}}],
                    "responses": {
                        "200": {"description": "{\"ResultCode\":\"0\",\"ResultDesc\":\"Accepted\"} or a C2B00011-C2B00016 rejection"},
                        "403": super::error_response("Source address refused by the allowlist"),
                        "404": super::error_response("Not this installation's C2B path")
                    }
                }
            }
    })
}

/// A payment by hand, as `GET /v1/c2b-transactions` lists it.
pub(super) fn transaction() -> Value {
    json!({
        "type": "object",
        "required": ["trans_id", "received_at", "trans_time", "shortcode", "kind", "account", "amount", "payer", "payer_name", "status", "note", "source", "copies"],
        "properties": {
            "trans_id": {"type": "string", "description": "M-Pesa's TransID (the receipt)"},
            "received_at": {"type": "string", "format": "date-time"},
            "trans_time": {"type": "string", "format": "date-time"},
            "shortcode": {"type": "string"},
            "kind": {"type": "string", "description": "pay_bill, buy_goods, or Daraja's own word"},
            "account": {"type": "string", "description": "The account number the customer typed (empty for a till)"},
            "amount": {"type": "integer"},
            "payer": {"type": "string", "description": "Masked, or that Safaricom hid the number"},
            "payer_name": {"type": "string"},
            "payment_id": {"type": ["string", "null"]},
            "status": {"type": "string", "enum": ["applied", "same_as_stk", "unmatched", "assigned", "refunded_outside"]},
            "note": {"type": "string"},
            "source": {"type": "string", "enum": ["confirmation", "pull"]},
            "copies": {"type": "integer", "description": "How many times Daraja sent it (recorded once)"}
        }
    })
}
