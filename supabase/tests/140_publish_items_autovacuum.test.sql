-- The run queue is vacuumed early, so dead entries of finished items do not pile up in the
-- partial index claims walk.
begin;
select plan(1);
select ok(
  (select reloptions @> array['autovacuum_vacuum_scale_factor=0.01', 'autovacuum_vacuum_threshold=1000']
   from pg_class where oid = 'internal.publish_run_items'::regclass),
  'publish_run_items is vacuumed after 1% of its rows change'
);
select * from finish();
rollback;
