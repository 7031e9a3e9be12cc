-- casetrail on PostgreSQL: an owner role that owns the schema and its tables, and the service's
-- role, which may read and append to the event log and its evidence, and never change or remove
-- a row of them. Run as a superuser (or a role with CREATEROLE that owns the database), twice:
-- once before `casetrail store init` (roles, schema, default privileges) and once after it (the
-- grants on the tables init created). Idempotent: running it again changes nothing.
--
--   psql -v ON_ERROR_STOP=1 -v schema=casetrail -v owner=casetrail_owner \
--        -v service=casetrail_service -d casetrail -f ops/postgres-roles.sql
--   CASETRAIL_DATABASE_URL='postgresql://casetrail_owner@db:5432/casetrail?schema=casetrail' \
--        casetrail store init
--   psql ... -f ops/postgres-roles.sql            # again
--
-- The service then runs as casetrail_service with CASETRAIL_CREATE_TABLE=no (it may not create
-- tables; the owner did). Set the roles' passwords with \password; never run the service as
-- the owner. A superuser can still bypass all of this: the checkpoints the units hold are what
-- catch that (`casetrail verify --checkpoint FILE`).

\set ON_ERROR_STOP 1

SELECT format('CREATE ROLE %I LOGIN', :'owner')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'owner') \gexec

SELECT format('CREATE ROLE %I LOGIN', :'service')
WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'service') \gexec

SELECT format('CREATE SCHEMA IF NOT EXISTS %I AUTHORIZATION %I', :'schema', :'owner') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I, %I', current_database(), :'owner', :'service')
\gexec
SELECT format('REVOKE CREATE ON SCHEMA %I FROM PUBLIC', :'schema') \gexec
SELECT format('GRANT USAGE ON SCHEMA %I TO %I', :'schema', :'service') \gexec

-- Tables and sequences the owner creates from now on: read and append, nothing more.
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT, INSERT ON TABLES TO %I',
              :'owner', :'schema', :'service') \gexec
SELECT format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT USAGE, SELECT ON SEQUENCES TO %I',
              :'owner', :'schema', :'service') \gexec

-- Tables that exist already (the second run, after `casetrail store init`).
SELECT format('GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA %I TO %I', :'schema', :'service') \gexec
SELECT format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', :'schema', :'service') \gexec
SELECT format('REVOKE UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA %I FROM %I',
              :'schema', :'service') \gexec

-- Followers move their positions (tracking tables) and read models rewrite their own rows: the
-- service may update those tables. Never the append-only ones: the events, the Merkle log's
-- nodes and leaves, the checkpoints.
SELECT format('GRANT UPDATE, DELETE ON %I.%I TO %I', schemaname, tablename, :'service')
FROM pg_tables
WHERE schemaname = :'schema'
  AND tablename NOT IN ('casetrail_events', 'casetrail_merkle_nodes', 'casetrail_merkle_leaves',
                        'casetrail_checkpoints', 'data_keys', 'data_key_destructions',
                        'data_key_wraps') \gexec

-- A data key's wraps are deleted when the key is destroyed (crypto-shredding, issue 19): the
-- service may delete them, never update them; the keys and their destructions are insert-only.
SELECT format('GRANT DELETE ON %I.%I TO %I', schemaname, tablename, :'service')
FROM pg_tables WHERE schemaname = :'schema' AND tablename = 'data_key_wraps' \gexec
