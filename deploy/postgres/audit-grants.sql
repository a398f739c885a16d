-- Production grants for the audit trail: the application's role may append, seal what was
-- appended, and read, and nothing else. Run as the database owner after `manage.py migrate`
-- (which the owner runs, not the app role). Replace gatehouse_app with the role the web and
-- worker processes use.
--
-- The triggers installed by the audit migrations already refuse UPDATE, DELETE and TRUNCATE
-- (but the seal and erasure's blanking); these grants make the same refusal a matter of
-- privilege, so that a compromised app cannot even drop the triggers (it does not own the table).

REVOKE ALL ON audit_auditevent FROM gatehouse_app;
GRANT SELECT, INSERT ON audit_auditevent TO gatehouse_app;
-- The seal (audit.sealing, run by every web and worker process that writes): a row written
-- unsealed gets its chain position and hash. The trigger still checks they go from NULL to a
-- value once, with nothing else on the row changing; rewriting a sealed hash stays refused.
GRANT UPDATE (sequence, hash) ON audit_auditevent TO gatehouse_app;
-- Erasure (GDPR) blanks a person's details in place, and deleting a user nulls the live
-- link. Only these columns, and the trigger still checks they are only blanked.
GRANT UPDATE (actor_id, actor_display, target_display, client_ip, user_agent) ON audit_auditevent TO gatehouse_app;
GRANT USAGE ON SEQUENCE audit_auditevent_id_seq TO gatehouse_app;

-- The pseudonym mapping is erasable by design: the app reads, adds and erases entries.
GRANT SELECT, INSERT, UPDATE ON audit_auditsubject TO gatehouse_app;
GRANT USAGE ON SEQUENCE audit_auditsubject_id_seq TO gatehouse_app;
