//! What the delivery log's search box means: one text that is an address,
//! a customer id, a template or a sequence, told apart by its form, or named
//! with a prefix (`address:`, `customer:`, `template:`, `sequence:`).

use crate::store::DeliveryFilter;

/// What the search text was taken for, to say so on the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Address,
    Customer,
    Template,
    Sequence,
}

impl Field {
    pub fn label(self) -> &'static str {
        match self {
            Field::Address => "address",
            Field::Customer => "customer",
            Field::Template => "template",
            Field::Sequence => "sequence",
        }
    }
}

/// Sets the filter's field for `text`: with a prefix, that field; else an
/// address when it has an `@`, a sequence when a sequence has that id, a
/// template when a template has it, and otherwise a customer id. Blank text
/// filters nothing (`None`).
pub fn apply(
    text: &str,
    is_sequence: impl Fn(&str) -> bool,
    is_template: impl Fn(&str) -> bool,
    filter: &mut DeliveryFilter,
) -> Option<Field> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let named = [
        ("address:", Field::Address),
        ("customer:", Field::Customer),
        ("template:", Field::Template),
        ("sequence:", Field::Sequence),
    ]
    .into_iter()
    .find_map(|(p, f)| text.strip_prefix(p).map(|v| (f, v.trim())));
    let (field, value) = match named {
        Some(n) => n,
        None if text.contains('@') => (Field::Address, text),
        None if is_sequence(text) => (Field::Sequence, text),
        None if is_template(text) => (Field::Template, text),
        None => (Field::Customer, text),
    };
    let value = Some(value.to_string());
    match field {
        Field::Address => filter.address = value,
        Field::Customer => filter.customer_id = value,
        Field::Template => filter.template = value,
        Field::Sequence => filter.sequence = value,
    }
    Some(field)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(text: &str) -> (Option<Field>, DeliveryFilter) {
        let mut f = DeliveryFilter::default();
        let field = apply(
            text,
            |s| s == "reorder",
            |t| t == "order-shipped" || t == "reorder",
            &mut f,
        );
        (field, f)
    }

    #[test]
    fn the_search_text_is_told_apart_by_its_form() {
        let (field, f) = take(" Anna@Example.com ");
        assert_eq!(field, Some(Field::Address));
        assert_eq!(f.address.as_deref(), Some("Anna@Example.com"));
        let (field, f) = take("order-shipped");
        assert_eq!(field, Some(Field::Template));
        assert_eq!(f.template.as_deref(), Some("order-shipped"));
        // A sequence before a template of the same name.
        assert_eq!(take("reorder").0, Some(Field::Sequence));
        let (field, f) = take("c_1042");
        assert_eq!(field, Some(Field::Customer));
        assert_eq!(f.customer_id.as_deref(), Some("c_1042"));
        assert_eq!(take("   ").0, None);
    }

    #[test]
    fn a_prefix_names_the_field() {
        let (field, f) = take("customer: reorder");
        assert_eq!(field, Some(Field::Customer));
        assert_eq!(f.customer_id.as_deref(), Some("reorder"));
        assert_eq!(f.sequence, None);
        assert_eq!(take("template:reorder").0, Some(Field::Template));
        assert_eq!(take("address:x").0, Some(Field::Address));
    }
}
