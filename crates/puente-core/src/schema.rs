/// The canonical type of a field, as discovered from a connector (or declared
/// in a mapping for systems whose storage type says less, like an e-mail kept
/// in a text column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldType {
    Text {
        max_len: Option<usize>,
    },
    Integer,
    /// Exact decimal; `scale` is the number of digits after the point the
    /// target keeps (None: any).
    Decimal {
        scale: Option<u32>,
    },
    Boolean,
    Date,
    DateTime,
    Enum {
        options: Vec<String>,
    },
    MultiEnum {
        options: Vec<String>,
    },
    Email,
    Phone,
    Reference,
}

impl FieldType {
    pub fn text() -> FieldType {
        FieldType::Text { max_len: None }
    }

    /// The type's name as users write it in a config `type = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            FieldType::Text { .. } => "text",
            FieldType::Integer => "integer",
            FieldType::Decimal { .. } => "decimal",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::DateTime => "datetime",
            FieldType::Enum { .. } => "enum",
            FieldType::MultiEnum { .. } => "multi_enum",
            FieldType::Email => "email",
            FieldType::Phone => "phone",
            FieldType::Reference => "reference",
        }
    }

    /// Parses a type name from a config (`options` apply to enumerations).
    pub fn from_name(name: &str) -> Option<FieldType> {
        Some(match name {
            "text" => FieldType::text(),
            "integer" => FieldType::Integer,
            "decimal" => FieldType::Decimal { scale: None },
            "boolean" => FieldType::Boolean,
            "date" => FieldType::Date,
            "datetime" => FieldType::DateTime,
            "enum" => FieldType::Enum { options: vec![] },
            "multi_enum" => FieldType::MultiEnum { options: vec![] },
            "email" => FieldType::Email,
            "phone" => FieldType::Phone,
            "reference" => FieldType::Reference,
            _ => return None,
        })
    }

    pub const NAMES: &'static [&'static str] = &[
        "text",
        "integer",
        "decimal",
        "boolean",
        "date",
        "datetime",
        "enum",
        "multi_enum",
        "email",
        "phone",
        "reference",
    ];
}

#[derive(Clone, Debug, PartialEq)]
pub struct FieldSchema {
    pub name: String,
    pub ty: FieldType,
    pub required: bool,
    pub unique: bool,
    pub read_only: bool,
    /// The store fills it when a create leaves it out (a default, an identity).
    pub has_default: bool,
    /// The system's own name for the type (`varchar(80)`, `numeric(12,2)`).
    pub native_type: String,
}

impl FieldSchema {
    pub fn new(name: &str, ty: FieldType) -> FieldSchema {
        FieldSchema {
            name: name.to_string(),
            ty,
            required: false,
            unique: false,
            read_only: false,
            has_default: false,
            native_type: String::new(),
        }
    }
}

/// What a connector discovered about one object (a table, a file, a CRM object).
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectSchema {
    pub name: String,
    /// The field whose value is the record id.
    pub id_field: String,
    pub fields: Vec<FieldSchema>,
    /// Any field name may be written (a new file's columns follow the mapping).
    pub open: bool,
    /// The object does not exist yet: the first write creates it.
    pub absent: bool,
}

impl ObjectSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields.iter().find(|f| f.name == name)
    }

    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|f| f.name.as_str()).collect()
    }
}
