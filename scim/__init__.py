"""SCIM 2.0 provisioning (RFC 7643, RFC 7644) at /scim/v2/: identity providers create, update
and deprovision Gatehouse's users and teams.

Implemented here rather than with django-scim2, for four reasons:

- filters: django-scim2 turns a filter into SQL text with scim2-filter-parser and runs it as a
  raw query; here a small parser (`scim.filters`) turns it into Django `Q` objects on named
  fields, so no client input is ever part of SQL and the ORM's joins and quoting apply;
- writes: django-scim2 writes through adapter objects, operation by operation; here every write
  goes through Gatehouse's services (`accounts.services`, so deactivation ends every session,
  key and websocket) in one transaction per request, so a PATCH with one bad operation
  changes nothing;
- its own credential and errors: the SCIM token (`scim.authentication`) is the only door to
  these views, and every error takes SCIM's shape; django-scim2 leaves authentication to the
  site's middleware and would have let a login or an API key in;
- scope: Gatehouse keeps a handful of attributes; the RFC's schemas for them are short
  (`scim.documents`), and the whole surface is covered by this app's tests.
"""
