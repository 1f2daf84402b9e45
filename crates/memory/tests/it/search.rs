use crate::open;
use autodidact_memory::{Embedding, Kind, NewMemory, Query};

fn emb(v: &[f32]) -> Option<Embedding> {
    Some(Embedding {
        model: "toy".into(),
        vector: v.to_vec(),
    })
}

#[test]
fn bm25_finds_by_words_with_stemming_and_only_current_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let old = m
        .remember(NewMemory {
            subject: Some("home".into()),
            ..NewMemory::new("The user lives in Paris.", Kind::Fact)
        })
        .unwrap()
        .id();
    m.remember(NewMemory {
        subject: Some("home".into()),
        ..NewMemory::new("The user lives in Lyon.", Kind::Fact)
    })
    .unwrap();
    m.remember(NewMemory::new("The user plays the cello.", Kind::Fact))
        .unwrap();
    let hits = m.search(&Query::new("where do I live")).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].memory.text, "The user lives in Lyon.");
    let q = Query {
        include_invalid: true,
        ..Query::new("where do I live")
    };
    let hits = m.search(&q).unwrap();
    assert_eq!(hits.len(), 2);
    assert!(hits[0].memory.is_current(), "the new value comes first");
    assert_eq!(hits[1].memory.id, old);
    // Operators and quotes in a query are words, not FTS syntax.
    assert!(m.search(&Query::new("\"cello\" OR NEAR( *")).unwrap()[0]
        .memory
        .text
        .contains("cello"));
    assert!(m.search(&Query::new("")).unwrap().is_empty());
}

#[test]
fn vectors_find_what_words_miss_and_fusion_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    let pet = m
        .remember(NewMemory {
            embedding: emb(&[1.0, 0.0, 0.1]),
            ..NewMemory::new("The user has a cat named Miso.", Kind::Fact)
        })
        .unwrap()
        .id();
    m.remember(NewMemory {
        embedding: emb(&[0.0, 1.0, 0.0]),
        ..NewMemory::new("The user drives a red car.", Kind::Fact)
    })
    .unwrap();
    let qv = [0.9f32, 0.1, 0.0];
    let q = Query {
        embedding: Some(("toy", &qv)),
        ..Query::new("any animals at home?")
    };
    let hits = m.search(&q).unwrap();
    assert_eq!(hits[0].memory.id, pet);
    assert_eq!(hits[0].vector_rank, Some(1));
    assert!(hits[0].bm25_rank.is_none());
    // Another model's vectors are never compared with this one's.
    let q = Query {
        embedding: Some(("other", &qv)),
        ..Query::new("any animals at home?")
    };
    assert!(m.search(&q).unwrap().is_empty());
}

#[test]
fn token_budget_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = open(&dir, "u1");
    for i in 0..20 {
        m.remember(NewMemory::new(
            format!("The user owns bicycle number {i} of many."),
            Kind::Fact,
        ))
        .unwrap();
    }
    let hits = m
        .search(&Query {
            limit: 10,
            ..Query::new("bicycle")
        })
        .unwrap();
    assert_eq!(hits.len(), 10);
    let q = Query {
        limit: 10,
        token_budget: Some(50),
        ..Query::new("bicycle")
    };
    let hits = m.search(&q).unwrap();
    let spent: usize = hits.iter().map(|h| h.tokens).sum();
    assert!(
        spent <= 50 && !hits.is_empty() && hits.len() < 10,
        "{spent} tokens in {} hits",
        hits.len()
    );
    let prompt = autodidact_memory::format_for_prompt(&hits);
    assert!(prompt.contains("bicycle number"));
}
