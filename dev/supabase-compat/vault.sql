-- A stand-in for Supabase Vault (supabase_vault), for the local stack only: vault.secrets,
-- vault.decrypted_secrets, vault.create_secret and vault.update_secret with the platform's
-- signatures and grants (`postgres` may use them; the API roles may not). Secrets are stored
-- encrypted with pgcrypto under a per-cluster key only the superuser can read, instead of
-- libsodium with a server-held key. Runs as the cluster superuser; re-running changes nothing.

\set ON_ERROR_STOP on

create schema if not exists vault authorization supabase_admin;

create table if not exists vault._stand_in_key (
  only_row boolean primary key default true check (only_row),
  key text not null default pg_catalog.encode(extensions.gen_random_bytes(32), 'hex')
);
insert into vault._stand_in_key default values on conflict do nothing;

create table if not exists vault.secrets (
  id uuid primary key default extensions.gen_random_uuid(),
  name text,
  description text not null default '',
  secret text not null,
  key_id uuid,
  nonce bytea default extensions.gen_random_bytes(16),
  created_at timestamptz not null default current_timestamp,
  updated_at timestamptz not null default current_timestamp
);
create unique index if not exists secrets_name_idx on vault.secrets (name) where name is not null;

create or replace function vault._encrypt(plain text) returns text
language sql volatile
set search_path = ''
as $$
  select pg_catalog.encode(extensions.pgp_sym_encrypt(plain, k.key), 'base64')
  from vault._stand_in_key k
$$;

-- The view's owner (the superuser) reads the key; its readers never do.
create or replace view vault.decrypted_secrets as
select s.id, s.name, s.description, s.secret,
  extensions.pgp_sym_decrypt(pg_catalog.decode(s.secret, 'base64'), k.key) as decrypted_secret,
  s.key_id, s.nonce, s.created_at, s.updated_at
from vault.secrets s cross join vault._stand_in_key k;

create or replace function vault.create_secret(new_secret text, new_name text default null,
  new_description text default '', new_key_id uuid default null) returns uuid
language plpgsql security definer
set search_path = ''
as $$
declare
  secret_id uuid;
begin
  insert into vault.secrets (secret, name, description, key_id)
  values (vault._encrypt(new_secret), new_name, coalesce(new_description, ''), new_key_id)
  returning id into secret_id;
  return secret_id;
end;
$$;

create or replace function vault.update_secret(secret_id uuid, new_secret text default null,
  new_name text default null, new_description text default null, new_key_id uuid default null)
returns void
language plpgsql security definer
set search_path = ''
as $$
begin
  update vault.secrets s set
    secret = case when new_secret is null then s.secret else vault._encrypt(new_secret) end,
    name = coalesce(new_name, s.name),
    description = coalesce(new_description, s.description),
    key_id = coalesce(new_key_id, s.key_id),
    updated_at = current_timestamp
  where s.id = secret_id;
end;
$$;

alter table vault._stand_in_key owner to supabase_admin;
alter table vault.secrets owner to supabase_admin;
alter view vault.decrypted_secrets owner to supabase_admin;
alter function vault._encrypt(text) owner to supabase_admin;
alter function vault.create_secret(text, text, text, uuid) owner to supabase_admin;
alter function vault.update_secret(uuid, text, text, text, uuid) owner to supabase_admin;

-- As on the platform: usage for postgres only; select and delete, no direct insert or update.
revoke all on schema vault from public, anon, authenticated, service_role;
grant usage on schema vault to postgres;
revoke all on all tables in schema vault from public, anon, authenticated, service_role, postgres;
grant select, delete on vault.secrets, vault.decrypted_secrets to postgres;
revoke all on all functions in schema vault from public, anon, authenticated, service_role;
grant execute on function vault.create_secret(text, text, text, uuid),
  vault.update_secret(uuid, text, text, text, uuid) to postgres;
