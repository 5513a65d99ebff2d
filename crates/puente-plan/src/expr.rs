//! Transforms and filters are minijinja expressions (`value | trim | title`,
//! `stage != "lost"`): a small, well-known language users may already know
//! from Jinja, Ansible or dbt, rather than one of our own.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use puente_core::{Fields, Value};
use rust_decimal::Decimal;

/// A compiled-and-checked expression, cheap to clone.
#[derive(Clone)]
pub struct Expr {
    source: Arc<str>,
    env: Arc<minijinja::Environment<'static>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError(pub String);

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Parses `source`; a syntax error names the problem.
    pub fn parse(source: &str) -> Result<Expr, ExprError> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.compile_expression(source)
            .map_err(|e| ExprError(format!("invalid expression {source:?}: {e}")))?;
        Ok(Expr {
            source: source.into(),
            env: Arc::new(env),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The record's fields the expression reads (`value` aside); `None`
    /// when it reads the whole record (`record[...]`), which may be any.
    pub fn fields(&self) -> Option<BTreeSet<String>> {
        let expr = self.env.compile_expression(&self.source).ok()?;
        let mut names = expr.undeclared_variables(false);
        if names.contains("record") {
            return None;
        }
        names.remove("value");
        Some(names.into_iter().collect())
    }

    /// Evaluates with the record's fields as variables (and as `record`),
    /// plus `value` when given.
    pub fn eval(&self, record: &Fields, value: Option<&Value>) -> Result<Value, ExprError> {
        let expr = self
            .env
            .compile_expression(&self.source)
            .map_err(|e| ExprError(e.to_string()))?;
        let mut ctx: BTreeMap<String, minijinja::Value> =
            record.iter().map(|(k, v)| (k.clone(), to_mj(v))).collect();
        ctx.insert(
            "record".into(),
            minijinja::Value::from_iter(record.iter().map(|(k, v)| (k.clone(), to_mj(v)))),
        );
        if let Some(v) = value {
            ctx.insert("value".into(), to_mj(v));
        }
        let out = expr
            .eval(minijinja::Value::from(ctx))
            .map_err(|e| ExprError(format!("expression {:?} failed: {e}", self.source)))?;
        Ok(from_mj(&out))
    }

    /// Evaluates as a condition (Jinja truthiness).
    pub fn test(&self, record: &Fields) -> Result<bool, ExprError> {
        let v = self.eval(record, None)?;
        Ok(match v {
            Value::Null => false,
            Value::Bool(b) => b,
            Value::Int(i) => i != 0,
            Value::Text(s) => !s.is_empty(),
            _ => true,
        })
    }
}

fn to_mj(v: &Value) -> minijinja::Value {
    match v {
        Value::Null => minijinja::Value::from(()),
        Value::Int(i) => minijinja::Value::from(*i),
        Value::Bool(b) => minijinja::Value::from(*b),
        Value::MultiEnum(s) => minijinja::Value::from_iter(s.iter().cloned()),
        other => minijinja::Value::from(other.to_text().unwrap_or_default()),
    }
}

fn from_mj(v: &minijinja::Value) -> Value {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Value::Null,
        ValueKind::Bool => Value::Bool(v.is_true()),
        ValueKind::Number => {
            if let Ok(i) = i64::try_from(v.clone()) {
                Value::Int(i)
            } else {
                v.to_string()
                    .parse::<Decimal>()
                    .map(Value::decimal)
                    .unwrap_or_else(|_| Value::text(v.to_string()))
            }
        }
        ValueKind::Seq => Value::MultiEnum(
            v.try_iter()
                .map(|it| it.map(|x| x.to_string()).collect())
                .unwrap_or_default(),
        )
        .canonical(),
        _ => Value::text(
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transforms_and_filters_evaluate() {
        let mut rec = Fields::new();
        rec.insert("stage".into(), Value::text("lost"));
        rec.insert("name".into(), Value::text("  ann lee "));
        let t = Expr::parse("value | trim | title").unwrap();
        assert_eq!(
            t.eval(&rec, Some(rec.get("name").unwrap())).unwrap(),
            Value::text("Ann Lee")
        );
        assert!(!Expr::parse("stage != 'lost'").unwrap().test(&rec).unwrap());
        assert!(Expr::parse("record.stage == 'lost'")
            .unwrap()
            .test(&rec)
            .unwrap());
        assert!(Expr::parse("stage ==").is_err());
        assert!(!Expr::parse("missing_field").unwrap().test(&rec).unwrap());
    }

    #[test]
    fn an_expression_names_the_fields_it_reads() {
        let fields = |src: &str| Expr::parse(src).unwrap().fields();
        let set = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            fields("first_name ~ ' ' ~ (last_name | upper)"),
            set(&["first_name", "last_name"])
        );
        assert_eq!(
            fields("value | default(nickname) | trim"),
            set(&["nickname"])
        );
        assert_eq!(
            fields("stage != 'lost' and amount > 100"),
            set(&["amount", "stage"])
        );
        // The whole record: any field may be read.
        assert_eq!(fields("record['Lead Source'] or value"), None);
    }
}
