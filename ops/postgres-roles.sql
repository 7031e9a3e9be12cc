-- casetrail on PostgreSQL: an owner role that owns the schema and every table, and one role per
-- process, each allowed what that process does and nothing more (issue 21):
--
--   api          the API workers: append events (commands, access events) and snapshots; keep
--                the Merkle log current and sign checkpoints for proofs and bundles; read all.
--   relay        `casetrail relay run`: append the facts it records (deadlines, notices,
--                findings); move its positions; keep its deadline duties and compliance state;
--                its heartbeat; read all.
--   projections  `casetrail projections run`: write its own read-model tables, positions and
--                heartbeats; keep the Merkle log current and sign checkpoints; read all. It
--                appends no event.
--
-- No role may UPDATE, DELETE or TRUNCATE an append-only table (events, snapshots, the Merkle
-- log's nodes and leaves, checkpoints, key announcements, data keys and their destructions); a position or heartbeat table gets
-- UPDATE only for the roles that move it; only projections may rewrite the read models.
--
-- Run as a superuser (or a role with CREATEROLE that owns the database), twice: once before
-- `casetrail store init` (roles, schema) and once after it (the grants on the tables init
-- created). Idempotent: running it again changes nothing.
--
--   psql -v ON_ERROR_STOP=1 -v schema=casetrail -v owner=casetrail_owner \
--        -v api=casetrail_api -v relay=casetrail_relay -v projections=casetrail_projections \
--        -d casetrail -f ops/postgres-roles.sql
--   CASETRAIL_DATABASE_URL='postgresql://casetrail_owner@db:5432/casetrail?schema=casetrail' \
--        casetrail store init       # with the service's CASETRAIL_HOME (its keys)
--   psql ... -f ops/postgres-roles.sql            # again
--
-- With `-v service=NAME` instead of the three, one role gets what all three get (one host that
-- runs everything under one role: the older layout). Each process then runs with
-- CASETRAIL_CREATE_TABLE=no and its own role in CASETRAIL_DATABASE_URL (ops/README.md). Set
-- the roles' passwords with \password; never run a process as the owner. A superuser can
-- still bypass all of this: the checkpoints the units hold are what catch that (`casetrail
-- verify --checkpoint FILE`). Proven by tests/integration/test_least_privilege.py and
-- tests/evidence/test_store_guard.py.

\set ON_ERROR_STOP 1

\if :{?service}
\set api :service
\set relay :service
\set projections :service
\endif

SELECT format('CREATE ROLE %I LOGIN', r)
FROM unnest(ARRAY[:'owner', :'api', :'relay', :'projections']) AS r
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r)
GROUP BY r \gexec

SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'owner') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I, %I, %I', current_database(),
              :'owner', :'api', :'relay', :'projections') \gexec
SELECT format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', :'schema') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I, %I, %I', :'schema', :'api', :'relay',
              :'projections') \gexec

-- Nothing beyond what is granted below: a table the owner creates later is readable (SELECT)
-- by the three and writable by none until this script runs again.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I, %I, %I',
              :'owner', :'schema', :'api', :'relay', :'projections') \gexec

-- Start from nothing on the tables that exist (the second run, after `casetrail store init`),
-- then read everything.
SELECT format('REVOKE ALL ON ALL TABLES IN SCHEMA %I FROM %I, %I, %I', :'schema', :'api',
              :'relay', :'projections') \gexec
SELECT format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I, %I, %I', :'schema', :'api',
              :'relay', :'projections') \gexec
SELECT format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I, %I', :'schema', :'api',
              :'relay') \gexec

-- Append (INSERT) where each appends.
SELECT format('GRANT INSERT ON %I.%I TO %I', :'schema', t, r)
FROM (VALUES ('casetrail_events'), ('casetrail_snapshots')) AS a(t),
     unnest(ARRAY[:'api', :'relay']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = :'schema' AND tablename = t) \gexec
-- The Merkle log and checkpoints: the projections process keeps them, an API worker catches
-- them up for a proof or bundle; `keys rotate --service` (run as api or the owner) announces.
SELECT format('GRANT INSERT ON %I.%I TO %I', :'schema', t, r)
FROM (VALUES ('casetrail_merkle_nodes'), ('casetrail_merkle_leaves'), ('casetrail_checkpoints'),
             ('casetrail_key_announcements')) AS a(t),
     unnest(ARRAY[:'api', :'projections']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = :'schema' AND tablename = t) \gexec

-- Positions move (INSERT, then UPDATE of the one row per follower); heartbeats are rewritten.
SELECT format('GRANT INSERT, UPDATE ON %I.%I TO %I', :'schema', t, r)
FROM (VALUES ('casetrail_merkle_tracking')) AS a(t), unnest(ARRAY[:'api', :'projections']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = :'schema' AND tablename = t) \gexec
SELECT format('GRANT INSERT, UPDATE ON %I.%I TO %I', :'schema', 'follower_heartbeats', r)
FROM unnest(ARRAY[:'relay', :'projections']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables
              WHERE schemaname = :'schema' AND tablename = 'follower_heartbeats') \gexec

-- The relay's own tables: its positions, the deadline duties it follows, the compliance
-- rules' state; rows there are replaced as cases move (UPDATE, DELETE).
SELECT format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO %I', :'schema', tablename, :'relay')
FROM pg_tables
WHERE schemaname = :'schema'
  AND (tablename LIKE 'nats\_%' OR tablename LIKE 'deadline\_duties%'
       OR tablename LIKE 'compliance\_rules\_%') \gexec

-- Every other table is a read model (its rows, its position): the projections process's own.
SELECT format('GRANT INSERT, UPDATE, DELETE ON %I.%I TO %I', :'schema', tablename,
              :'projections')
FROM pg_tables
WHERE schemaname = :'schema'
  AND tablename NOT LIKE 'casetrail\_%'
  AND tablename <> 'follower_heartbeats'
  AND tablename NOT LIKE 'nats\_%' AND tablename NOT LIKE 'deadline\_duties%'
  AND tablename NOT LIKE 'compliance\_rules\_%' AND tablename NOT LIKE 'data\_key%' \gexec

-- The data keys (issue 19, gateway/store/datakeys.py): made by whoever writes a file's first
-- event, destroyed by an erasure (`retention apply`, the relay's daily run, a guardian's
-- deletion through the API). The keys and their destructions are insert-only; a destroyed
-- key's wraps are deleted (the one DELETE of key material), never updated.
SELECT format('GRANT INSERT ON %I.%I TO %I', :'schema', t, r)
FROM (VALUES ('data_keys'), ('data_key_destructions'), ('data_key_wraps')) AS a(t),
     unnest(ARRAY[:'api', :'relay']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = :'schema' AND tablename = t) \gexec
SELECT format('GRANT DELETE ON %I.%I TO %I', :'schema', 'data_key_wraps', r)
FROM unnest(ARRAY[:'api', :'relay']) AS r
WHERE EXISTS (SELECT 1 FROM pg_tables
              WHERE schemaname = :'schema' AND tablename = 'data_key_wraps') \gexec
