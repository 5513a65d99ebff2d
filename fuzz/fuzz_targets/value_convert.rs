//! Value conversions on arbitrary text, to every type: a value or an error,
//! never a panic, and a converted value converts to itself again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use puente_core::{FieldType, Value};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let types = [
        FieldType::Text { max_len: Some(20) },
        FieldType::Integer,
        FieldType::Decimal { scale: Some(2) },
        FieldType::Decimal { scale: None },
        FieldType::Boolean,
        FieldType::Date,
        FieldType::DateTime,
        FieldType::Enum { options: vec!["a".into(), "B".into()] },
        FieldType::MultiEnum { options: vec![] },
        FieldType::Email,
        FieldType::Phone,
        FieldType::Reference,
    ];
    for ty in &types {
        if let Ok(v) = Value::text(text).convert(ty, "f") {
            let again = v.convert(ty, "f").expect("a converted value converts again");
            assert!(again.same(&v), "{ty:?}: {v:?} became {again:?}");
            if let Some(t) = v.to_text() {
                let round = Value::text(t.as_str()).convert(ty, "f");
                if let Ok(round) = round {
                    assert!(round.same(&v), "{ty:?}: {text:?} → {v:?} → {t:?} → {round:?}");
                }
            }
        }
    }
});
