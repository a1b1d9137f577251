use super::ValidationError;

/// Pool, queue and deployment names are DNS-1123 labels: they end up in
/// Kubernetes label values and Job names.
pub(crate) fn validate_dns_label(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > 63 {
        return Err(ValidationError::new(
            field,
            format!("must be at most 63 characters, got {}", value.len()),
        ));
    }
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
    if !value.chars().all(ok_char) {
        return Err(ValidationError::new(
            field,
            format!("{value:?} must contain only lowercase letters, digits and '-'"),
        ));
    }
    if value.starts_with('-') || value.ends_with('-') {
        return Err(ValidationError::new(
            field,
            format!("{value:?} must start and end with a letter or digit"),
        ));
    }
    Ok(())
}

/// The most tags a run (or a deployment) carries.
pub(crate) const MAX_TAGS: usize = 64;

/// Tags are free-form but bounded and printable, since they name concurrency
/// limits and appear in metrics labels.
pub(crate) fn validate_tag(field: &str, value: &str) -> Result<(), ValidationError> {
    if value.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if value.len() > 128 {
        return Err(ValidationError::new(
            field,
            "must be at most 128 characters",
        ));
    }
    if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ValidationError::new(
            field,
            format!("{value:?} must not contain whitespace or control characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(validate_dns_label("name", "gpu-pool-1").is_ok());
        assert!(validate_dns_label("name", "a").is_ok());
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", &"x".repeat(64)] {
            let err = validate_dns_label("name", bad).expect_err(bad);
            assert_eq!(err.field, "name");
        }
    }

    #[test]
    fn tags() {
        assert!(validate_tag("tags[0]", "db:prod").is_ok());
        assert!(validate_tag("tags[0]", "").is_err());
        assert!(validate_tag("tags[0]", "a b").is_err());
        assert!(validate_tag("tags[0]", &"x".repeat(129)).is_err());
    }
}
