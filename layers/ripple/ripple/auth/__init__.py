"""Authentication: password hashing and JWT tokens."""
