"""One router module per page resource."""
