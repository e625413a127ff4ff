//! The consumer routes in the OpenAPI document, with the bodies Confluent's
//! REST Proxy v2 and Kinesis' API-Gateway shapes define (a test checks each
//! documented route is served).

use serde_json::{Map, Value, json};

/// `(method, path, summary, request schema, success status, response schema, response media type)`.
type Route = (&'static str, &'static str, &'static str, Option<&'static str>, u16, Option<&'static str>, &'static str);

pub const ROUTES: &[Route] = &[
    ("post", "/consumers/{group}", "Create a consumer instance in a group", Some("CreateConsumer"), 200, Some("CreatedConsumer"), super::wire::V2),
    (
        "delete",
        "/consumers/{group}/instances/{instance}",
        "Remove the instance (with auto commit, commit what it read first)",
        None,
        204,
        None,
        super::wire::V2,
    ),
    ("post", "/consumers/{group}/instances/{instance}/subscription", "Subscribe to topics or a topic pattern", Some("Subscribe"), 204, None, super::wire::V2),
    ("get", "/consumers/{group}/instances/{instance}/subscription", "The topics the instance subscribes to", None, 200, Some("Topics"), super::wire::V2),
    ("delete", "/consumers/{group}/instances/{instance}/subscription", "Unsubscribe from everything", None, 204, None, super::wire::V2),
    (
        "post",
        "/consumers/{group}/instances/{instance}/assignments",
        "Read exactly these partitions (no group sharing)",
        Some("Partitions"),
        204,
        None,
        super::wire::V2,
    ),
    ("get", "/consumers/{group}/instances/{instance}/assignments", "The partitions the instance reads now", None, 200, Some("Partitions"), super::wire::V2),
    (
        "get",
        "/consumers/{group}/instances/{instance}/records",
        "Records after the instance's positions (query: timeout ms, max_bytes); Accept names the instance's format",
        None,
        200,
        Some("Records"),
        super::wire::JSON_RECORDS,
    ),
    (
        "post",
        "/consumers/{group}/instances/{instance}/offsets",
        "Commit offsets (each the last record processed), or with no body everything read",
        Some("Offsets"),
        204,
        None,
        super::wire::V2,
    ),
    (
        "get",
        "/consumers/{group}/instances/{instance}/offsets",
        "The group's committed offsets of the partitions in the body",
        Some("Partitions"),
        200,
        Some("Committed"),
        super::wire::V2,
    ),
    (
        "post",
        "/consumers/{group}/instances/{instance}/positions",
        "Seek: read these partitions from these offsets next",
        Some("Offsets"),
        204,
        None,
        super::wire::V2,
    ),
    ("post", "/consumers/{group}/instances/{instance}/positions/beginning", "Seek to the first record kept", Some("Partitions"), 204, None, super::wire::V2),
    ("post", "/consumers/{group}/instances/{instance}/positions/end", "Seek past the last record", Some("Partitions"), 204, None, super::wire::V2),
    (
        "get",
        "/streams/{stream}/sharditerator",
        "Kinesis GetShardIterator (query: shard-id, ShardIteratorType, StartingSequenceNumber)",
        None,
        200,
        Some("ShardIterator"),
        "application/x-amz-json-1.1",
    ),
    (
        "get",
        "/streams/{stream}/records",
        "Kinesis GetRecords from the Shard-Iterator header (query: limit)",
        None,
        200,
        Some("GetRecords"),
        "application/x-amz-json-1.1",
    ),
];

fn tp() -> Value {
    json!({ "type": "object", "required": ["topic", "partition"], "properties": { "topic": { "type": "string" }, "partition": { "type": "integer" } } })
}

fn offset() -> Value {
    json!({ "type": "object", "required": ["topic", "partition", "offset"], "properties": {
        "topic": { "type": "string" }, "partition": { "type": "integer" }, "offset": { "type": "integer" }, "metadata": { "type": "string" } } })
}

/// The bodies the routes take and give.
pub fn schemas() -> Map<String, Value> {
    let mut s = Map::new();
    s.insert(
        "CreateConsumer".into(),
        json!({ "type": "object", "properties": {
        "name": { "type": "string", "description": "Instance name; generated when absent" },
        "format": { "type": "string", "enum": ["json", "binary"], "default": "binary" },
        "auto.offset.reset": { "type": "string", "enum": ["earliest", "latest", "none"], "default": "latest" },
        "auto.commit.enable": { "type": "string", "enum": ["true", "false"], "default": "true" } } }),
    );
    s.insert(
        "CreatedConsumer".into(),
        json!({ "type": "object", "required": ["instance_id", "base_uri"], "properties": {
        "instance_id": { "type": "string" }, "base_uri": { "type": "string" } } }),
    );
    s.insert(
        "Subscribe".into(),
        json!({ "type": "object", "properties": {
        "topics": { "type": "array", "items": { "type": "string" } },
        "topic_pattern": { "type": "string", "description": "A regular expression over topic names; instead of topics" } } }),
    );
    s.insert("Topics".into(), json!({ "type": "object", "properties": { "topics": { "type": "array", "items": { "type": "string" } } } }));
    s.insert("Partitions".into(), json!({ "type": "object", "required": ["partitions"], "properties": { "partitions": { "type": "array", "items": tp() } } }));
    s.insert("Offsets".into(), json!({ "type": "object", "required": ["offsets"], "properties": { "offsets": { "type": "array", "items": offset() } } }));
    s.insert("Committed".into(), json!({ "type": "object", "properties": { "offsets": { "type": "array", "items": offset() } } }));
    s.insert(
        "Records".into(),
        json!({ "type": "array", "items": { "type": "object", "properties": {
        "topic": { "type": "string" }, "partition": { "type": "integer" }, "offset": { "type": "integer" },
        "key": { "description": "JSON (format json) or base64 (format binary); null when the record has none" },
        "value": { "description": "JSON (format json) or base64 (format binary)" } } } }),
    );
    s.insert(
        "RestProxyError".into(),
        json!({ "type": "object", "required": ["error_code", "message"], "properties": {
        "error_code": { "type": "integer", "description": "e.g. 40403 instance not found, 40601 format mismatch, 40902 instance exists" },
        "message": { "type": "string" } } }),
    );
    s.insert("ShardIterator".into(), json!({ "type": "object", "properties": { "ShardIterator": { "type": "string" } } }));
    s.insert(
        "GetRecords".into(),
        json!({ "type": "object", "properties": {
        "Records": { "type": "array", "items": { "type": "object", "properties": {
            "SequenceNumber": { "type": "string" }, "ApproximateArrivalTimestamp": { "type": "number" },
            "Data": { "type": "string", "format": "byte" }, "PartitionKey": { "type": "string" } } } },
        "NextShardIterator": { "type": "string" }, "MillisBehindLatest": { "type": "integer" } } }),
    );
    s
}

/// The consumer routes as OpenAPI path items.
pub fn paths() -> Map<String, Value> {
    let mut paths = Map::new();
    for (method, path, summary, request, status, response, media) in ROUTES {
        let params: Vec<Value> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|p| json!({ "name": p, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let ok = match response {
            Some(r) => json!({ "description": "success", "content": { *media: { "schema": { "$ref": format!("#/components/schemas/{r}") } } } }),
            None => json!({ "description": "done; no body" }),
        };
        let error =
            json!({ "description": "REST Proxy error", "content": { super::wire::V2: { "schema": { "$ref": "#/components/schemas/RestProxyError" } } } });
        let mut op = json!({
            "summary": summary,
            "tags": ["consume"],
            "parameters": params,
            "security": [{ "ingest": [] }, {}],
            "responses": { status.to_string(): ok, "404": error.clone(), "406": error.clone(), "409": error.clone(), "422": error },
        });
        if let Some(r) = request {
            op["requestBody"] = json!({ "content": { super::wire::V2: { "schema": { "$ref": format!("#/components/schemas/{r}") } } } });
        }
        paths.entry(path.to_string()).or_insert_with(|| json!({}))[*method] = op;
    }
    paths
}
