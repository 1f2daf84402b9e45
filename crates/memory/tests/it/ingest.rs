use crate::open;
use autodidact_memory::extract::RuleExtractor;
use autodidact_memory::ingest::{IngestFile, Pipeline};
use autodidact_memory::Query;

const FILE: &str = r#"{"sessions": [
  {"id": "s2", "date": "2024-03-01", "turns": [
    {"id": "b1", "speaker": "user", "text": "Good news: I moved to Lisbon. I like tea."},
    {"id": "b2", "speaker": "assistant", "text": "Congratulations! I live in the cloud."}
  ]},
  {"id": "s1", "date": "2024-01-10", "turns": [
    {"id": "a1", "speaker": "user", "text": "Hi, my name is Rui and I live in Porto."},
    {"id": "a2", "speaker": "assistant", "text": "Nice to meet you, Rui."},
    {"id": "a3", "speaker": "user", "text": "I like tea. My friend Ana lives in Faro."}
  ]}
]}"#;

#[test]
fn ingest_orders_sessions_links_turns_and_applies_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "rui");
    let p = Pipeline {
        extractors: vec![&RuleExtractor],
        embedder: None,
    };
    let stats = p
        .ingest(&mut m, &IngestFile::from_json(FILE).unwrap(), &[])
        .unwrap();
    assert_eq!((stats.sessions, stats.turns), (2, 5));
    assert_eq!((stats.added, stats.reaffirmed, stats.superseded), (4, 1, 1));
    let current: Vec<String> = m.list(false).unwrap().into_iter().map(|x| x.text).collect();
    // The friend's home is the friend's: it does not close the user's.
    assert_eq!(
        current,
        [
            "The user's name is Rui.",
            "The user likes tea.",
            "The user's friend Ana lives in Faro.",
            "The user lives in Lisbon."
        ]
    );
    let hit = &m.search(&Query::new("where does the user live")).unwrap()[0];
    assert_eq!(hit.memory.text, "The user lives in Lisbon.");
    let src = hit.memory.sources[0];
    let turn = m
        .turns(src.conversation)
        .unwrap()
        .into_iter()
        .find(|t| Some(t.id) == src.turn)
        .unwrap();
    assert_eq!(turn.ext_id.as_deref(), Some("b1"));
    assert!(IngestFile::from_json("{\"sessions\": [{\"turns\": []}]}").is_err());
}
