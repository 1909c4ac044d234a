-- Test helpers shared by every pgTAP file (vendored, no network): act as a signed-in user,
-- as the service role, or as nobody, the way PostgREST sets role and claims per request.
begin;
select plan(1);

create schema if not exists tests;
grant usage on schema tests to anon, authenticated, service_role;

create or replace function tests.authenticate_as(p_user_id uuid) returns void
language plpgsql as $$
begin
  perform set_config('role', 'authenticated', true);
  perform set_config('request.jwt.claims', json_build_object(
    'sub', p_user_id, 'role', 'authenticated', 'aud', 'authenticated')::text, true);
end;
$$;

create or replace function tests.authenticate_as_service_role() returns void
language plpgsql as $$
begin
  perform set_config('role', 'service_role', true);
  perform set_config('request.jwt.claims', '{"role":"service_role"}', true);
end;
$$;

create or replace function tests.clear_authentication() returns void
language plpgsql as $$
begin
  perform set_config('role', 'anon', true);
  perform set_config('request.jwt.claims', '{"role":"anon"}', true);
end;
$$;

-- Creates a user (and returns its id) for tests that need one beyond the seed.
create or replace function tests.create_user(p_email text) returns uuid
language sql as $$
  insert into auth.users (id, aud, role, email)
  values (gen_random_uuid(), 'authenticated', 'authenticated', p_email)
  returning id
$$;

grant execute on all functions in schema tests to anon, authenticated, service_role;

select ok(true, 'test helpers installed');
select * from finish();
commit;
