-- A stand-in for Supabase's pg_net (the `net` schema), for the local stack only: the same SQL
-- interface, with delivery done by dev/supabase-compat/net_worker.ts instead of pg_net's
-- background worker. net.http_post only enqueues; the worker sees a request once its
-- transaction commits, so a rolled-back transaction sends nothing. Runs as the cluster
-- superuser, like the extension on the platform; re-running it changes nothing.
--
-- One deliberate difference: pg_net 0.12+ grants USAGE on `net` and ALL on its tables to PUBLIC.
-- Here the tables are readable and writable by `postgres` only (the request queue holds the
-- scheduler's secret, the response table the function's answers), and only `postgres` may
-- call the request functions. The README says what to check on a real project.

\set ON_ERROR_STOP on

create schema if not exists net authorization supabase_admin;
-- As the platform's grant_pg_net_access event trigger does.
grant usage on schema net to postgres, anon, authenticated, service_role;

do $$
begin
  if not exists (select 1 from pg_type t join pg_namespace n on n.oid = t.typnamespace
                 where n.nspname = 'net' and t.typname = 'http_method') then
    create domain net.http_method as text
      check (value ilike 'get' or value ilike 'post' or value ilike 'delete');
  end if;
end
$$;

-- Unlogged, as in pg_net: lost on a crash.
create unlogged table if not exists net.http_request_queue (
  id bigserial,
  method net.http_method not null,
  url text not null,
  headers jsonb,
  body bytea,
  timeout_milliseconds integer not null
);

create unlogged table if not exists net._http_response (
  id bigint,
  status_code integer,
  content_type text,
  headers jsonb,
  content text,
  timed_out boolean,
  error_msg text,
  created timestamptz not null default now()
);
create index if not exists _http_response_created_idx on net._http_response (created);

-- Percent-encodes everything outside RFC 3986's unreserved characters.
create or replace function net._urlencode_string(string text) returns text
language sql immutable strict
set search_path = ''
as $$
  select coalesce(pg_catalog.string_agg(
    case when b.c ~ '^[A-Za-z0-9._~-]$' then b.c
      else (select pg_catalog.string_agg('%' || pg_catalog.upper(pg_catalog.lpad(
        pg_catalog.to_hex(pg_catalog.get_byte(pg_catalog.convert_to(b.c, 'UTF8'), i)), 2, '0')), ''
        order by i)
        from pg_catalog.generate_series(0,
          pg_catalog.octet_length(pg_catalog.convert_to(b.c, 'UTF8')) - 1) i)
    end, '' order by b.n), '')
  from pg_catalog.regexp_split_to_table(string, '') with ordinality b(c, n)
$$;

-- `url` with `params` appended as a query string.
create or replace function net._url_with_params(url text, params jsonb) returns text
language sql immutable
set search_path = ''
as $$
  select case when params is null or params = '{}'::jsonb then url
    else url || case when pg_catalog.strpos(url, '?') > 0 then '&' else '?' end ||
      (select pg_catalog.string_agg(net._urlencode_string(p.key) || '=' ||
         net._urlencode_string(p.value), '&' order by p.key)
       from pg_catalog.jsonb_each_text(params) p)
  end
$$;

create or replace function net._enqueue(method text, url text, params jsonb, headers jsonb,
  body bytea, timeout_milliseconds integer) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  request_id bigint;
begin
  if timeout_milliseconds is null or timeout_milliseconds <= 0 then
    raise exception 'timeout_milliseconds must be positive, got %',
      coalesce(timeout_milliseconds::text, 'NULL');
  end if;
  insert into net.http_request_queue (method, url, headers, body, timeout_milliseconds)
  values (method, net._url_with_params(url, params), headers, body, timeout_milliseconds)
  returning id into request_id;
  -- NOTIFY is delivered on commit only: it wakes the worker for committed requests.
  perform pg_catalog.pg_notify('net_http_request_queue', request_id::text);
  return request_id;
end;
$$;

create or replace function net.http_post(
  url text,
  body jsonb default '{}'::jsonb,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{"Content-Type": "application/json"}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  content_type text;
begin
  select h.value into content_type from pg_catalog.jsonb_each_text(coalesce(headers, '{}')) h
  where pg_catalog.lower(h.key) = 'content-type' limit 1;
  -- As pg_net: a missing Content-Type is added, any other than JSON is refused.
  if content_type is null then
    headers := coalesce(headers, '{}'::jsonb) || '{"Content-Type": "application/json"}'::jsonb;
  elsif content_type <> 'application/json' then
    raise exception 'Content-Type header must be "application/json"';
  end if;
  return net._enqueue('POST', url, params, headers,
    pg_catalog.convert_to(body::text, 'UTF8'), timeout_milliseconds);
end;
$$;

create or replace function net.http_get(
  url text,
  params jsonb default '{}'::jsonb,
  headers jsonb default '{}'::jsonb,
  timeout_milliseconds integer default 5000
) returns bigint
language sql
set search_path = ''
as $$
  select net._enqueue('GET', url, params, headers, null, timeout_milliseconds)
$$;

alter table net.http_request_queue owner to supabase_admin;
alter table net._http_response owner to supabase_admin;
alter function net._urlencode_string(text) owner to supabase_admin;
alter function net._url_with_params(text, jsonb) owner to supabase_admin;
alter function net._enqueue(text, text, jsonb, jsonb, bytea, integer) owner to supabase_admin;
alter function net.http_post(text, jsonb, jsonb, jsonb, integer) owner to supabase_admin;
alter function net.http_get(text, jsonb, jsonb, integer) owner to supabase_admin;

revoke all on all tables in schema net from public, anon, authenticated, service_role;
revoke all on all sequences in schema net from public, anon, authenticated, service_role;
revoke all on all functions in schema net from public, anon, authenticated, service_role;
grant select, insert, update, delete on net.http_request_queue, net._http_response to postgres;
grant usage, select on all sequences in schema net to postgres;
grant execute on all functions in schema net to postgres;
