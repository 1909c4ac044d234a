-- A signed-in user's read of public.tenants tested every tenant against every grant (the policy
-- ran auth_roles() once per row: a sequential scan of all tenants, ~110 ms at 100,000). The
-- policy now matches the caller's administered tenants, computed once, so the read is an index
-- lookup. Same rows: internal.caller_admin_tenants() applies auth_roles' prefix semantics, and it
-- reads tenants as its owner, so the policy does not recurse.
alter policy "Users must be authorized to their catalog tenant" on public.tenants
  using (tenant::text = any ((select internal.caller_admin_tenants())::text[]));
