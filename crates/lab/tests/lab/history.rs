//! Histories written by the storm read back unchanged.

use stockroom_lab::{EventType, HistoryEvent, HistoryWriter, OpValue, read_history};

#[test]
fn history_round_trips() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("history.jsonl");
    let events = vec![
        HistoryEvent {
            kind: EventType::Invoke,
            process: 3,
            time: 1_000,
            f: "order".into(),
            value: OpValue {
                product: Some("Laptop".into()),
                quantity: Some(2),
                idempotency_key: Some("k-1".into()),
                ..OpValue::default()
            },
        },
        HistoryEvent {
            kind: EventType::Ok,
            process: 3,
            time: 2_500,
            f: "order".into(),
            value: OpValue {
                order_id: Some("0198-abc".into()),
                status_code: Some(201),
                outcome: Some("reserved".into()),
                attempts: Some(1),
                ..OpValue::default()
            },
        },
        HistoryEvent {
            kind: EventType::Info,
            process: 4,
            time: 3_000,
            f: "order".into(),
            value: OpValue {
                error: Some("connection refused".into()),
                outcome: Some("error".into()),
                ..OpValue::default()
            },
        },
    ];
    let writer = HistoryWriter::create(&path).unwrap();
    for event in &events {
        writer.append(event).unwrap();
    }
    writer.flush().unwrap();
    assert_eq!(read_history(&path).unwrap(), events);
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "invoke");
    assert_eq!(first["process"], 3);
    assert_eq!(first["f"], "order");
    assert_eq!(first["value"]["idempotencyKey"], "k-1");
}

#[test]
fn a_bad_history_line_is_an_error() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("history.jsonl");
    std::fs::write(&path, "{\"type\":\"ok\"}\n").unwrap();
    let error = read_history(&path).unwrap_err().to_string();
    assert!(error.contains("line 1"), "{error}");
}

/// A history that cannot be read names its cause once, whether its chain is
/// followed (the storm, through anyhow) or only the checker's message is
/// printed (`stockroom check`).
#[test]
fn an_unreadable_history_names_its_cause_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("missing.jsonl");
    let error = read_history(&path).expect_err("the file does not exist");
    let chain = stockroom_http_kit::ErrorChain(&error).to_string();
    assert!(chain.starts_with("cannot open history file "), "{chain}");
    let cause = std::fs::File::open(&path).unwrap_err().to_string();
    assert_eq!(chain.matches(cause.as_str()).count(), 1, "{chain}");

    let checked = stockroom_lab::CheckError::from(error);
    assert_eq!(checked.to_string(), chain);
    assert!(std::error::Error::source(&checked).is_none());
}
