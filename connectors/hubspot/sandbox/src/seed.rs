//! Realistic seed data: contacts, companies and deals with their
//! associations, including near-duplicates (same person, other e-mail; two
//! companies on one domain) and awkward values (accents, right-to-left
//! text, emoji, apostrophes, phone numbers in many formats, empty names).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value as J};

use super::store::{self, now_ms, Store};

const FIRST: &[&str] = &[
    "Ana",
    "Bruno",
    "Chloé",
    "Dmitri",
    "Eve",
    "Farah",
    "Giulia",
    "Hiro",
    "Ingrid",
    "José",
    "Kwame",
    "Léa",
    "Mateo",
    "Nadia",
    "Oisín",
    "Priya",
    "Quinn",
    "Rosa",
    "Søren",
    "Tomás",
    "Uma",
    "Viktor",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zoë",
    "דניאל",
    "مريم",
    "Seán",
    "Mary-Kate",
];
const LAST: &[&str] = &[
    "García",
    "O'Brien",
    "Müller",
    "Nakamura",
    "Okafor",
    "Rossi",
    "Dubois",
    "Kowalski",
    "Silva",
    "Johansson",
    "Novak",
    "Haddad",
    "Fernández",
    "Smith",
    "Ng",
    "van der Berg",
    "Ivanova",
    "Lee",
    "כהן",
    "الهاشمي",
    "Østergaard",
    "D'Angelo",
];
const COMPANIES: &[(&str, &str, &str)] = &[
    (
        "Acme Logistics",
        "acme-logistics.com",
        "LOGISTICS_AND_SUPPLY_CHAIN",
    ),
    ("Borealis Software", "borealis.io", "COMPUTER_SOFTWARE"),
    ("Café Núñez", "cafenunez.es", "RETAIL"),
    (
        "Delta Construcciones",
        "delta-construcciones.mx",
        "CONSTRUCTION",
    ),
    (
        "Everbright Health",
        "everbright.health",
        "HOSPITAL_HEALTH_CARE",
    ),
    ("Fjord Finans AS", "fjordfinans.no", "FINANCIAL_SERVICES"),
    ("Grünwald & Söhne", "gruenwald.de", "WHOLESALE"),
    ("Harbor Accounting", "harbor-accounting.com", "ACCOUNTING"),
    ("Iris Retail 🛍️", "iris-retail.co.uk", "RETAIL"),
    ("Jade Dragon Trading", "jadedragon.hk", "WHOLESALE"),
];
const CITIES: &[(&str, &str, &str)] = &[
    ("Madrid", "Spain", "+34 91 123 45 67"),
    ("Berlin", "Germany", "030 1234567"),
    ("Boston", "United States", "(617) 555-0142"),
    ("Tokyo", "Japan", "+81-3-1234-5678"),
    ("Lagos", "Nigeria", "+234 1 234 5678"),
    ("São Paulo", "Brazil", "+55 (11) 91234-5678"),
    ("Tel Aviv", "Israel", "+972-3-123-4567"),
    ("Oslo", "Norway", "+47 22 12 34 56"),
];
const STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "contractsent",
    "closedwon",
    "closedlost",
];
/// Lifecycle stages a seeded contact may be in (not evangelist or other).
const LIFECYCLE: &[&str] = store::LIFECYCLE.split_at(6).0;

fn props(pairs: &[(&str, String)]) -> Map<String, J> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), J::String(v.clone())))
        .collect()
}

fn ascii(s: &str) -> String {
    let folded: String = s
        .chars()
        .map(|c| match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'í' | 'ï' => 'i',
            'ó' | 'ö' | 'ø' | 'Ø' => 'o',
            'ú' | 'ü' => 'u',
            'ñ' => 'n',
            'ç' => 'c',
            c => c,
        })
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_lowercase();
    if folded.is_empty() {
        "user".into()
    } else {
        folded
    }
}

/// Seeds `n` contacts, about n/10 companies and n/4 deals.
pub fn seed(store: &mut Store, n: u64) {
    let mut rng = StdRng::seed_from_u64(n);
    let now = now_ms();
    let mut company_ids = Vec::new();
    let n_companies = (n / 10).max(3) as usize;
    for i in 0..n_companies {
        let (name, domain, industry) = COMPANIES[i % COMPANIES.len()];
        let round = i / COMPANIES.len();
        let (name, domain) = if round == 0 {
            (name.to_string(), domain.to_string())
        } else {
            (
                format!("{name} {}", round + 1),
                format!("{}{}", round + 1, domain),
            )
        };
        let city = CITIES[rng.gen_range(0..CITIES.len())];
        let p = props(&[
            ("name", name),
            ("domain", domain),
            ("industry", industry.to_string()),
            ("city", city.0.to_string()),
            ("country", city.1.to_string()),
            ("phone", city.2.to_string()),
            ("numberofemployees", rng.gen_range(3..5000).to_string()),
        ]);
        if let Ok(id) = store.create("companies", &p, now - rng.gen_range(0..86_400_000 * 90)) {
            company_ids.push(id);
        }
    }
    // A near-duplicate company: same domain, written differently.
    let dup = props(&[
        ("name", "ACME Logistics, Inc.".into()),
        ("domain", "acme-logistics.com".into()),
    ]);
    if let Ok(id) = store.create("companies", &dup, now) {
        company_ids.push(id);
    }
    let mut contact_ids = Vec::new();
    for i in 0..n {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let city = CITIES[rng.gen_range(0..CITIES.len())];
        let email = format!("{}.{}{}@example{}.com", ascii(first), ascii(last), i, i % 7);
        let mut p = vec![
            ("email", email),
            ("firstname", first.to_string()),
            (
                "lastname",
                if i % 53 == 7 {
                    String::new()
                } else {
                    last.to_string()
                },
            ),
            ("city", city.0.to_string()),
            ("country", city.1.to_string()),
            ("phone", city.2.to_string()),
            (
                "lifecyclestage",
                LIFECYCLE[rng.gen_range(0..LIFECYCLE.len())].to_string(),
            ),
        ];
        if i % 17 == 3 {
            p.push((
                "jobtitle",
                "Head of Ops 🚀 — EMEA & LATAM (interim)".to_string(),
            ));
        }
        let Ok(id) = store.create(
            "contacts",
            &props(&p),
            now - rng.gen_range(0..86_400_000 * 60),
        ) else {
            continue;
        };
        contact_ids.push(id);
        if !company_ids.is_empty() && i % 5 != 4 {
            let c = company_ids[rng.gen_range(0..company_ids.len())];
            store.link("contacts", id, "companies", c, "HUBSPOT_DEFINED", 1);
        }
        // A near-duplicate: the same person under a work address.
        if i % 29 == 11 {
            let mut d = props(&p);
            d.insert(
                "email".into(),
                J::String(format!("{}@work-{}.example.org", ascii(first), i)),
            );
            if let Ok(id) = store.create("contacts", &d, now) {
                contact_ids.push(id);
            }
        }
    }
    for i in 0..(n / 4) {
        let Some(company) = company_ids.get(rng.gen_range(0..company_ids.len().max(1))) else {
            break;
        };
        let amount = format!(
            "{}.{:02}",
            rng.gen_range(500..250_000),
            rng.gen_range(0..100)
        );
        let p = props(&[
            ("dealname", format!("Deal #{} — renewal", 1000 + i)),
            ("amount", amount),
            ("pipeline", "default".into()),
            (
                "dealstage",
                STAGES[rng.gen_range(0..STAGES.len())].to_string(),
            ),
        ]);
        if let Ok(id) = store.create("deals", &p, now) {
            store.link("deals", id, "companies", *company, "HUBSPOT_DEFINED", 5);
            if let Some(c) = contact_ids.get(rng.gen_range(0..contact_ids.len().max(1))) {
                store.link("deals", id, "contacts", *c, "HUBSPOT_DEFINED", 3);
            }
        }
    }
    store.changes.clear();
}
