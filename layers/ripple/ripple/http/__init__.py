"""HTTP boundary helpers shared by the API function: errors, bodies, auth headers."""
