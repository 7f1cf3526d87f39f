"""Use cases: the business rules, written against repositories and caches."""
