//! Buildbot's result specs: which fields, filters, order and page a read asks for. Parsed
//! from the REST query (`field=`, `order=`, `limit=`, `offset=`, `NAME=`, `NAME__OP=`,
//! `property=`), pushed into SQL where a field has a column, and applied to the JSON
//! otherwise, with the same meaning either way.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use sqlx::any::AnyRow;

use sqlx::Row;

use super::json_text;
use crate::db::{Db, DbResult, Dialect};

/// How a field's filter values are read from the query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Integer,
    /// Seconds since the epoch, an integer in the JSON as in Buildbot.
    DateTime,
    String,
    Boolean,
    /// A list filtered by its items (`tags__contains=x`).
    IntegerList,
    StringList,
    /// Objects and nested resources: selectable, not filterable.
    Object,
}

impl FieldType {
    fn parse(self, text: &str) -> Option<Value> {
        match self {
            FieldType::Integer | FieldType::DateTime | FieldType::IntegerList => {
                text.trim().parse::<i64>().ok().map(Value::from)
            }
            FieldType::String | FieldType::StringList => Some(Value::from(text)),
            FieldType::Boolean => match text.to_ascii_lowercase().as_str() {
                "on" | "true" | "yes" | "1" => Some(Value::Bool(true)),
                "off" | "false" | "no" | "0" => Some(Value::Bool(false)),
                _ => None,
            },
            FieldType::Object => None,
        }
    }
}

/// A resource type as the data API describes it: its names and its fields.
#[derive(Debug)]
pub struct Entity {
    /// `build`
    pub name: &'static str,
    /// `builds`: the key of the REST answer.
    pub plural: &'static str,
    pub fields: &'static [(&'static str, FieldType)],
}

impl Entity {
    fn field(&self, name: &str) -> Option<FieldType> {
        self.fields
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, kind)| *kind)
    }
}

/// A filter operator (`NAME__OP=value`; a bare `NAME=value` is `eq`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    In,
    NotIn,
}

impl Op {
    fn parse(name: &str) -> Option<Op> {
        Some(match name {
            "eq" => Op::Eq,
            "ne" => Op::Ne,
            "lt" => Op::Lt,
            "le" => Op::Le,
            "gt" => Op::Gt,
            "ge" => Op::Ge,
            "contains" => Op::Contains,
            "in" => Op::In,
            "notin" => Op::NotIn,
            _ => return None,
        })
    }

    /// Comparisons take one value; the others take a list.
    fn takes_many(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Contains | Op::In | Op::NotIn)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub field: String,
    pub op: Op,
    pub values: Vec<Value>,
}

impl Filter {
    /// Whether an item's value passes, as Buildbot's in-memory filters decide.
    fn accepts(&self, value: &Value) -> bool {
        let first = &self.values[0];
        let contains = |needle: &Value| match (value, needle) {
            (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
            (Value::Array(items), needle) => items.contains(needle),
            _ => false,
        };
        if self.values.len() > 1 {
            return match self.op {
                Op::Eq | Op::In => self.values.contains(value),
                Op::Ne | Op::NotIn => !self.values.contains(value),
                Op::Contains => self.values.iter().any(contains),
                _ => false,
            };
        }
        match self.op {
            Op::Eq => value == first,
            Op::Ne => value != first,
            Op::Lt => compare(value, first) == Some(Ordering::Less),
            Op::Le => matches!(
                compare(value, first),
                Some(Ordering::Less | Ordering::Equal)
            ),
            Op::Gt => compare(value, first) == Some(Ordering::Greater),
            Op::Ge => matches!(
                compare(value, first),
                Some(Ordering::Greater | Ordering::Equal)
            ),
            Op::Contains => contains(first),
            Op::In => self.values.contains(value),
            Op::NotIn => !self.values.contains(value),
        }
    }
}

/// Numbers with numbers, strings with strings; anything else does not compare.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Sort order: `null` first, as Buildbot's `NoneComparator`.
fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    match (a.is_null(), b.is_null()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => compare(a, b).unwrap_or(Ordering::Equal),
    }
}

/// What a read asks for besides the resource itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// Only these fields, when given.
    pub fields: Option<Vec<String>>,
    pub filters: Vec<Filter>,
    /// Field names, `-` first for descending.
    pub order: Vec<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `property=NAME` (or `*`): the build (or request) properties to include.
    pub properties: Vec<String>,
}

/// One page of a collection and how many items the whole collection holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub total: usize,
}

impl Query {
    /// Reads the query parameters of a REST request on `entity`; the error says which
    /// parameter is wrong. A single item takes only `field` and `property`.
    pub fn parse(
        pairs: &[(String, String)],
        entity: &Entity,
        collection: bool,
    ) -> Result<Query, String> {
        // Like Twisted's request.args: each name once, with all its values, in order.
        let mut args: Vec<(&str, Vec<&str>)> = Vec::new();
        for (name, value) in pairs {
            match args.iter_mut().find(|(n, _)| n == name) {
                Some((_, values)) => values.push(value),
                None => args.push((name, vec![value])),
            }
        }
        let check = |name: &str| match entity.field(name) {
            Some(_) => Ok(()),
            None => Err(format!("no such field '{name}'")),
        };
        let mut query = Query::default();
        for (name, values) in args {
            match name {
                "order" => {
                    for key in &values {
                        check(key.strip_prefix('-').unwrap_or(key))?;
                    }
                    query.order = values.iter().map(|v| v.to_string()).collect();
                }
                "field" => {
                    for field in &values {
                        check(field)?;
                    }
                    query.fields = Some(values.iter().map(|v| v.to_string()).collect());
                }
                "limit" | "offset" => {
                    let number = values[0]
                        .parse::<i64>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| format!("invalid {name}"))?;
                    if name == "limit" {
                        query.limit = Some(number);
                    } else {
                        query.offset = Some(number);
                    }
                }
                "property" => query
                    .properties
                    .extend(values.iter().map(|v| v.to_string())),
                _ => {
                    let (field, op) = match entity.field(name) {
                        Some(_) => (name, Op::Eq),
                        None => {
                            let parsed = name
                                .rsplit_once("__")
                                .and_then(|(field, op)| Some((field, Op::parse(op)?)))
                                .filter(|(field, _)| entity.field(field).is_some());
                            parsed
                                .ok_or_else(|| format!("unrecognized query parameter '{name}'"))?
                        }
                    };
                    if values.len() > 1 && !op.takes_many() {
                        return Err(format!("'{name}' takes one value"));
                    }
                    let kind = entity.field(field).unwrap_or(FieldType::Object);
                    let values = values
                        .iter()
                        .map(|v| kind.parse(v))
                        .collect::<Option<Vec<Value>>>()
                        .ok_or_else(|| format!("invalid filter value for {name}"))?;
                    query.filters.push(Filter {
                        field: field.to_string(),
                        op,
                        values,
                    });
                }
            }
        }
        if let Some(fields) = &query.fields {
            if query
                .order
                .iter()
                .any(|o| !fields.iter().any(|f| f == o.trim_start_matches('-')))
            {
                return Err("cannot order on un-selected fields".into());
            }
            if query.filters.iter().any(|f| !fields.contains(&f.field)) {
                return Err("cannot filter on un-selected fields".into());
            }
        }
        if !collection && !query.filters.is_empty() {
            return Err("this is not a collection".into());
        }
        Ok(query)
    }

    /// Whether `property=` asked for `name`.
    pub fn wants_property(&self, name: &str) -> bool {
        self.properties.iter().any(|p| p == "*" || p == name)
    }

    /// Filters, sorts and pages items read without the SQL doing it. `counted` is the
    /// total the SQL counted when it did all of that already.
    pub fn page(&self, mut items: Vec<Value>, counted: Option<i64>) -> Page {
        if let Some(total) = counted {
            return Page {
                items,
                total: total as usize,
            };
        }
        items.retain(|item| {
            self.filters
                .iter()
                .all(|f| f.accepts(item.get(&f.field).unwrap_or(&Value::Null)))
        });
        let total = items.len();
        if !self.order.is_empty() {
            items.sort_by(|a, b| {
                self.order
                    .iter()
                    .map(|key| {
                        let (field, descending) = match key.strip_prefix('-') {
                            Some(field) => (field, true),
                            None => (key.as_str(), false),
                        };
                        let null = Value::Null;
                        let ordering =
                            sort_cmp(a.get(field).unwrap_or(&null), b.get(field).unwrap_or(&null));
                        if descending {
                            ordering.reverse()
                        } else {
                            ordering
                        }
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            });
        }
        let offset = self.offset.unwrap_or(0) as usize;
        let items = items
            .into_iter()
            .skip(offset)
            .take(self.limit.map_or(usize::MAX, |l| l as usize))
            .collect();
        Page { items, total }
    }

    /// Keeps the asked `field=`s of an item.
    pub fn project(&self, item: &mut Value) {
        if let (Some(fields), Value::Object(map)) = (&self.fields, item) {
            map.retain(|key, _| fields.iter().any(|f| f == key));
        }
    }
}

pub(crate) use crate::db::{bind_all, Bind};

impl Bind {
    fn of(value: &Value) -> Option<Bind> {
        match value {
            Value::Number(n) => n.as_i64().map(Bind::Int),
            Value::Bool(b) => Some(Bind::Int(*b as i64)),
            Value::String(s) => Some(Bind::Text(s.clone())),
            _ => None,
        }
    }
}

/// A collection read: the fixed part of a SELECT, conditions from the URL path, and the
/// columns by which the query's filters and order can be done in SQL.
pub(crate) struct Listing<'a> {
    pub select: &'a str,
    pub from: &'a str,
    /// Field name -> SQL expression.
    pub columns: &'a [(&'a str, &'a str)],
    /// The order when none is asked.
    pub default_order: &'a str,
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

impl<'a> Listing<'a> {
    pub fn new(
        select: &'a str,
        from: &'a str,
        columns: &'a [(&'a str, &'a str)],
        default_order: &'a str,
    ) -> Listing<'a> {
        Listing {
            select,
            from,
            columns,
            default_order,
            conditions: Vec::new(),
            binds: Vec::new(),
        }
    }

    fn placeholder(&mut self, bind: Bind) -> String {
        self.binds.push(bind);
        format!("${}", self.binds.len())
    }

    /// Adds `expression = value` (a condition of the URL path: `/builders/3/builds`).
    pub fn when(mut self, expression: &str, value: Bind) -> Self {
        let placeholder = self.placeholder(value);
        self.conditions
            .push(format!("{expression} = {placeholder}"));
        self
    }

    /// Adds a condition on one value; `make` gets the value's placeholder.
    pub fn when_bound(mut self, make: impl FnOnce(&str) -> String, value: Bind) -> Self {
        let placeholder = self.placeholder(value);
        self.conditions.push(make(&placeholder));
        self
    }

    /// Adds a condition with no value.
    pub fn when_sql(mut self, condition: &str) -> Self {
        self.conditions.push(condition.to_string());
        self
    }

    fn column(&self, field: &str) -> Option<&'a str> {
        self.columns
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, expression)| *expression)
    }

    /// The SQL for one filter, when its field has a column.
    fn condition(&mut self, filter: &Filter, dialect: Dialect) -> Option<String> {
        let column = self.column(&filter.field)?;
        let binds: Vec<Bind> = filter.values.iter().map(Bind::of).collect::<Option<_>>()?;
        let list = |this: &mut Self, binds: Vec<Bind>| {
            let placeholders: Vec<String> =
                binds.into_iter().map(|b| this.placeholder(b)).collect();
            placeholders.join(", ")
        };
        let contains = |this: &mut Self, bind: Bind| {
            let placeholder = this.placeholder(bind);
            match dialect {
                Dialect::Sqlite => format!("instr({column}, {placeholder}) > 0"),
                Dialect::Postgres => format!("strpos({column}, {placeholder}) > 0"),
            }
        };
        let many = binds.len() > 1;
        Some(match filter.op {
            Op::Eq | Op::In if many || filter.op == Op::In => {
                format!("{column} IN ({})", list(self, binds))
            }
            Op::Ne | Op::NotIn if many || filter.op == Op::NotIn => {
                format!("{column} NOT IN ({})", list(self, binds))
            }
            Op::Contains => {
                let parts: Vec<String> = binds.into_iter().map(|b| contains(self, b)).collect();
                format!("({})", parts.join(" OR "))
            }
            op => {
                let sign = match op {
                    Op::Eq => "=",
                    Op::Ne => "<>",
                    Op::Lt => "<",
                    Op::Le => "<=",
                    Op::Gt => ">",
                    _ => ">=",
                };
                let placeholder = self.placeholder(binds.into_iter().next()?);
                format!("{column} {sign} {placeholder}")
            }
        })
    }

    /// Puts the query's filters and order into SQL where their fields have columns, and
    /// pages in SQL when nothing is left to do on the items.
    fn plan(&mut self, dialect: Dialect, query: &Query) -> Plan {
        let mut rest = Query {
            fields: None,
            filters: Vec::new(),
            properties: Vec::new(),
            ..query.clone()
        };
        for filter in &query.filters {
            match self.condition(filter, dialect) {
                Some(condition) => self.conditions.push(condition),
                None => rest.filters.push(filter.clone()),
            }
        }
        let mut order = Vec::new();
        for key in &query.order {
            let (field, direction) = match key.strip_prefix('-') {
                Some(field) => (field, " DESC"),
                None => (key.as_str(), ""),
            };
            match self.column(field) {
                Some(column) => order.push(format!("{column}{direction}")),
                None => {
                    order.clear();
                    break;
                }
            }
        }
        if order.len() == query.order.len() {
            rest.order.clear();
        }
        // Only the default order breaks ties, as in Buildbot: an index on the asked
        // columns (`builderid, number`) then serves the order without a sort.
        if order.is_empty() {
            order.push(self.default_order.to_string());
        }
        let conditions = if self.conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.conditions.join(" AND "))
        };
        let paged = rest.filters.is_empty()
            && rest.order.is_empty()
            && (query.limit.is_some() || query.offset.is_some());
        let mut tail = format!(
            " FROM {}{conditions} ORDER BY {}",
            self.from,
            order.join(", ")
        );
        if paged {
            // SQLite needs a LIMIT before an OFFSET; -1 is none there, ALL in PostgreSQL.
            let limit = query.limit.map_or_else(
                || match dialect {
                    Dialect::Sqlite => "-1".to_string(),
                    Dialect::Postgres => "ALL".to_string(),
                },
                |l| l.to_string(),
            );
            tail.push_str(&format!(
                " LIMIT {limit} OFFSET {}",
                query.offset.unwrap_or(0)
            ));
            rest.limit = None;
            rest.offset = None;
        }
        let count = paged.then(|| format!("SELECT COUNT(*) FROM {}{conditions}", self.from));
        Plan { tail, count, rest }
    }

    /// Runs the read. Returns the rows, the total when the SQL did the whole query (and
    /// paged), and what is left for [`Query::page`].
    pub async fn fetch(
        mut self,
        db: &Db,
        query: &Query,
    ) -> DbResult<(Vec<AnyRow>, Option<i64>, Query)> {
        let plan = self.plan(db.dialect, query);
        let sql = format!("SELECT {}{}", self.select, plan.tail);
        let rows = db.rest_read(&sql, &self.binds).await?;
        let total = match &plan.count {
            Some(count) => Some(one_row(db.rest_read(count, &self.binds).await?)?.try_get(0)?),
            None => None,
        };
        Ok((rows, total, plan.rest))
    }

    /// Runs the read as one statement whose answer is the whole page as a JSON array of
    /// `item` objects (with only the `field=`s asked) and the total, so that no row crosses
    /// from the database one at a time and no item is built in Rust. `None` when the SQL
    /// cannot do all of the query (a filter or order on a field without a column) or
    /// `property=` asks for properties: the caller reads the items with [`Listing::fetch`].
    pub async fn fetch_json(
        mut self,
        db: &Db,
        query: &Query,
        item: &[(&str, JsonField)],
    ) -> DbResult<Option<JsonPage>> {
        if !query.properties.is_empty() {
            return Ok(None);
        }
        let plan = self.plan(db.dialect, query);
        if !plan.rest.filters.is_empty() || !plan.rest.order.is_empty() {
            return Ok(None);
        }
        let mut item: Vec<&(&str, JsonField)> = item
            .iter()
            .filter(|(name, _)| {
                query
                    .fields
                    .as_ref()
                    .is_none_or(|f| f.iter().any(|f| f == name))
            })
            .collect();
        // serde_json's maps keep their keys sorted: so do these objects.
        item.sort_by_key(|(name, _)| *name);
        let dialect = db.dialect;
        let columns: Vec<String> = item
            .iter()
            .enumerate()
            .filter_map(|(at, (_, field))| field.column(dialect).map(|c| format!("{c} AS c{at}")))
            .collect();
        // A page with no column still has its rows.
        let columns = if columns.is_empty() {
            "1 AS c".to_string()
        } else {
            columns.join(", ")
        };
        let pairs: Vec<String> = item
            .iter()
            .enumerate()
            .map(|(at, (name, field))| format!("'{name}', {}", field.value(dialect, at)))
            .collect();
        let pairs = pairs.join(", ");
        let array = match dialect {
            Dialect::Sqlite => format!("json_group_array(json_object({pairs}))"),
            Dialect::Postgres => {
                format!("CAST(COALESCE(json_agg(json_build_object({pairs})), '[]') AS TEXT)")
            }
        };
        let total = match &plan.count {
            Some(count) => format!("({count})"),
            None => "COUNT(*)".to_string(),
        };
        let sql = format!(
            "SELECT {array}, {total} FROM (SELECT {columns}{}) AS page",
            plan.tail
        );
        let row = one_row(db.rest_read(&sql, &self.binds).await?)?;
        let array: String = row.try_get(0)?;
        let total: i64 = row.try_get(1)?;
        let array = match dialect {
            // SQLite writes JSON without spaces; PostgreSQL spaces it out.
            Dialect::Sqlite => array,
            Dialect::Postgres => json_text::compact(&array),
        };
        Ok(Some(JsonPage {
            array,
            total: total as usize,
        }))
    }
}

/// A read's SQL after the SELECT list, its count, and what is left to do on the items.
struct Plan {
    /// ` FROM ... WHERE ... ORDER BY ... [LIMIT ... OFFSET ...]`
    tail: String,
    /// The statement counting the whole collection, when the SQL pages.
    count: Option<String>,
    rest: Query,
}

/// How the database makes an item's field, in the JSON type the field has in Buildbot's
/// REST answers. Each holds the SQL expression of the field's value.
#[derive(Clone, Copy, Debug)]
pub(crate) enum JsonField {
    /// An integer or text column, as it is (`NULL` is `null`).
    Plain(&'static str),
    /// Seconds as a float column: whole seconds, truncated as Rust's `as i64` does.
    Seconds(&'static str),
    /// A condition: `true` or `false`.
    Flag(&'static str),
    /// A text column holding JSON, embedded as the value it holds.
    Json(&'static str),
    /// Always `{}`.
    EmptyObject,
}

impl JsonField {
    /// The expression the paging subquery selects, if the field reads a column.
    fn column(&self, dialect: Dialect) -> Option<String> {
        Some(match (self, dialect) {
            (JsonField::Plain(e) | JsonField::Json(e), _) => e.to_string(),
            (JsonField::Seconds(e), Dialect::Sqlite) => format!("CAST({e} AS INTEGER)"),
            (JsonField::Seconds(e), Dialect::Postgres) => format!("CAST(trunc({e}) AS BIGINT)"),
            (JsonField::Flag(e), _) => format!("({e})"),
            (JsonField::EmptyObject, _) => return None,
        })
    }

    /// The JSON value made from the subquery's column `c{at}`. SQLite's JSON functions
    /// take an argument as JSON (not as a string) only when it comes straight from one of
    /// them, so those wrap the column here rather than in the subquery.
    fn value(&self, dialect: Dialect, at: usize) -> String {
        match (self, dialect) {
            (JsonField::Plain(_) | JsonField::Seconds(_), _) => format!("page.c{at}"),
            (JsonField::Flag(_), Dialect::Sqlite) => {
                format!("json(CASE WHEN page.c{at} THEN 'true' ELSE 'false' END)")
            }
            (JsonField::Flag(_), Dialect::Postgres) => format!("page.c{at}"),
            (JsonField::Json(_), Dialect::Sqlite) => format!("json(page.c{at})"),
            (JsonField::Json(_), Dialect::Postgres) => format!("CAST(page.c{at} AS json)"),
            (JsonField::EmptyObject, Dialect::Sqlite) => "json_object()".to_string(),
            (JsonField::EmptyObject, Dialect::Postgres) => "json_build_object()".to_string(),
        }
    }
}

/// A page of a collection as the database wrote it: a compact JSON array whose items have
/// the shape (and the key order) the JSON values of the general path serialize to.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonPage {
    pub array: String,
    pub total: usize,
}

/// The one row of an aggregate's answer.
fn one_row(rows: Vec<AnyRow>) -> DbResult<AnyRow> {
    Ok(rows.into_iter().next().ok_or(sqlx::Error::RowNotFound)?)
}

/// `$1, $2, ...` for a list of ids, and the ids to bind.
pub(crate) fn id_list(ids: &[i64]) -> (String, Vec<Bind>) {
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    (
        placeholders.join(", "),
        ids.iter().map(|id| Bind::Int(*id)).collect(),
    )
}

/// The properties `property=` asked for, from a `name -> [value, source]` map.
pub(crate) fn wanted_properties(query: &Query, all: Map<String, Value>) -> Map<String, Value> {
    all.into_iter()
        .filter(|(name, _)| query.wants_property(name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const THING: Entity = Entity {
        name: "thing",
        plural: "things",
        fields: &[
            ("id", FieldType::Integer),
            ("name", FieldType::String),
            ("done", FieldType::Boolean),
            ("tags", FieldType::StringList),
            ("at", FieldType::DateTime),
        ],
    };

    fn parse(query: &str) -> Result<Query, String> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        Query::parse(&pairs, &THING, true)
    }

    #[test]
    fn parameters_are_read_as_buildbot_reads_them() {
        let query =
            parse("field=id&field=name&order=-id&limit=5&offset=2&name__contains=x&id=3&id=4")
                .unwrap();
        assert_eq!(query.fields, Some(vec!["id".into(), "name".into()]));
        assert_eq!(query.order, vec!["-id"]);
        assert_eq!((query.limit, query.offset), (Some(5), Some(2)));
        assert_eq!(
            query.filters,
            vec![
                Filter {
                    field: "name".into(),
                    op: Op::Contains,
                    values: vec![json!("x")]
                },
                Filter {
                    field: "id".into(),
                    op: Op::Eq,
                    values: vec![json!(3), json!(4)]
                },
            ]
        );
        assert_eq!(
            parse("done=yes").unwrap().filters[0].values,
            vec![json!(true)]
        );
    }

    #[test]
    fn bad_parameters_say_what_is_wrong() {
        let cases = [
            ("field=nope", "no such field 'nope'"),
            ("order=-nope", "no such field 'nope'"),
            ("limit=x", "invalid limit"),
            ("offset=-1", "invalid offset"),
            ("id=abc", "invalid filter value for id"),
            ("id__gt=abc", "invalid filter value for id__gt"),
            ("done=maybe", "invalid filter value for done"),
            (
                "id__between=1",
                "unrecognized query parameter 'id__between'",
            ),
            ("colour=red", "unrecognized query parameter 'colour'"),
            ("id__lt=1&id__lt=2", "'id__lt' takes one value"),
            ("field=id&order=name", "cannot order on un-selected fields"),
            ("field=id&name=x", "cannot filter on un-selected fields"),
        ];
        for (query, error) in cases {
            assert_eq!(parse(query).unwrap_err(), error, "{query}");
        }
        let pairs = vec![("id".to_string(), "1".to_string())];
        assert_eq!(
            Query::parse(&pairs, &THING, false).unwrap_err(),
            "this is not a collection"
        );
    }

    #[test]
    fn in_memory_paging_filters_sorts_and_slices() {
        let items = vec![
            json!({"id": 1, "name": "b", "tags": ["x"], "at": null}),
            json!({"id": 2, "name": "a", "tags": ["y"], "at": 5}),
            json!({"id": 3, "name": "c", "tags": ["x", "y"], "at": 3}),
            json!({"id": 4, "name": "a", "tags": [], "at": 4}),
        ];
        let page = parse("tags__contains=x").unwrap().page(items.clone(), None);
        assert_eq!(page.total, 2);
        let page = parse("order=name&order=-id&limit=2")
            .unwrap()
            .page(items.clone(), None);
        let ids: Vec<&Value> = page.items.iter().map(|i| &i["id"]).collect();
        assert_eq!((ids, page.total), (vec![&json!(4), &json!(2)], 4));
        let page = parse("order=at&offset=1")
            .unwrap()
            .page(items.clone(), None);
        let ids: Vec<&Value> = page.items.iter().map(|i| &i["id"]).collect();
        assert_eq!(ids, vec![&json!(3), &json!(4), &json!(2)]);
        let page = parse("id__ge=2&id__ne=3")
            .unwrap()
            .page(items.clone(), None);
        assert_eq!(page.total, 2);
        let page = parse("name__in=a&name__in=c").unwrap().page(items, None);
        assert_eq!(page.total, 3);
    }
}
