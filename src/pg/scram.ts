/**
 * Password verifiers computed on the client, so that the plain password never reaches the server's
 * statement log (what psql's \password does).
 */
import { createHash, createHmac, pbkdf2Sync } from 'node:crypto';

/** A SCRAM-SHA-256 verifier for CREATE/ALTER ROLE ... PASSWORD (PostgreSQL 10+). Pure given the salt. */
export function scramSha256Verifier(password: string, salt: Buffer, iterations = 4096): string {
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  const storedKey = createHash('sha256').update(clientKey).digest();
  const serverKey = createHmac('sha256', salted).update('Server Key').digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString('base64')}$${storedKey.toString('base64')}:${serverKey.toString('base64')}`;
}

/** An md5 verifier (PostgreSQL before 10). */
export function md5Verifier(password: string, user: string): string {
  return `md5${createHash('md5')
    .update(password + user)
    .digest('hex')}`;
}
