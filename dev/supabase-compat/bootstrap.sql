-- Recreates, on plain Debian Postgres, what a hosted Supabase project provides before any
-- migration runs: its roles, the `extensions` and `auth` schemas, GoTrue's auth functions and
-- the default privileges in `public`. Runs as the cluster superuser (`supabase_admin`, as on
-- Supabase). Every statement is guarded, so re-running it changes nothing.
--
-- psql variable `grants_mode`: 'current' (projects after 2026-10-30: new objects in public get
-- no API-role grants) or 'legacy' (older projects: blanket grants to anon/authenticated/service_role).

\set ON_ERROR_STOP on

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login nosuperuser createdb createrole replication bypassrls inherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin login noinherit;
  end if;
end
$$;

-- Attributes as Supabase ships them (roles.out): postgres is not a superuser but bypasses RLS.
alter role postgres nosuperuser createdb createrole replication bypassrls inherit login;
alter role anon inherit;
alter role authenticated inherit;
alter role service_role inherit bypassrls;
alter role postgres set search_path = "$user", public, extensions;
alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

grant anon, authenticated, service_role to authenticator;
grant anon, authenticated, service_role, authenticator to postgres;
grant pg_read_all_data, pg_signal_backend, pg_monitor to postgres;

alter database postgres owner to postgres;
grant all on schema public to postgres;

-- Schema `extensions` (owned by postgres) with the preinstalled extensions.
create schema if not exists extensions authorization postgres;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
create extension if not exists pgcrypto with schema extensions;
create extension if not exists "uuid-ossp" with schema extensions;
-- Extensions Supabase lets `postgres` enable through supautils; plain Postgres needs a superuser,
-- so they are created here and the migrations' `create extension if not exists` are no-ops.
create extension if not exists pgtap with schema extensions;
create extension if not exists plpgsql_check;
create extension if not exists pg_cron;
grant usage on schema cron to postgres with grant option;
grant select on all tables in schema cron to postgres;
grant delete on cron.job_run_details to postgres;

-- The `auth` schema as GoTrue leaves it: owned by the platform, readable by postgres.
create schema if not exists auth authorization supabase_admin;
grant usage on schema auth to anon, authenticated, service_role, postgres;
grant all on schema auth to supabase_auth_admin;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  phone text unique,
  phone_confirmed_at timestamptz,
  banned_until timestamptz,
  is_sso_user boolean not null default false,
  deleted_at timestamptz,
  is_anonymous boolean not null default false
);
create unique index if not exists users_email_partial_key on auth.users (email)
  where is_sso_user = false;
alter table auth.users owner to supabase_auth_admin;
grant all on auth.users to postgres;

-- GoTrue's definitions (20220224000811, 20220531120530): the JSON claims GUC wins over nothing,
-- the legacy per-claim GUC is still honoured.
create or replace function auth.uid() returns uuid
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.email() returns text
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.email', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'email')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
alter function auth.jwt() owner to supabase_auth_admin;

-- Default privileges in public, first as every project got them at creation...
alter default privileges for role postgres in schema public
  grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to postgres, anon, authenticated, service_role;
grant usage on schema public to postgres, anon, authenticated, service_role;

-- ...then, on today's platform, without the Data API grants (changelog 45329, 2026-10-30).
select :'grants_mode' = 'current' as revoke_api_grants \gset
\if :revoke_api_grants
alter default privileges for role postgres in schema public
  revoke select, insert, update, delete on tables from anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  revoke usage, select on sequences from anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  revoke execute on functions from anon, authenticated, service_role;
\endif
