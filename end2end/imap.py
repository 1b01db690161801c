"""An independent IMAP client for the browser tests: Python's imaplib over
implicit TLS (the test server's certificate is self-signed, so it is not
verified here; the Rust suites check TLS itself).

usage: imap.py PORT USER PASSWORD FOLDER [FLAGS]
With FLAGS (say '$Label1 \\Flagged'), first adds them to the folder's newest
message with UID STORE, as a desktop client tagging a message would.
prints JSON: {"subjects": [...], "flags": [...]} in UID order.
"""
import email
import email.header
import imaplib
import json
import ssl
import sys

port, user, password, folder = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
store = sys.argv[5] if len(sys.argv) > 5 else None
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", int(port), ssl_context=ctx)
m.login(user, password)
typ, _ = m.select('"%s"' % folder, readonly=store is None)
assert typ == "OK", folder
if store:
    typ, data = m.uid("SEARCH", None, "ALL")
    newest = data[0].split()[-1]
    typ, _ = m.uid("STORE", newest, "+FLAGS", "(%s)" % store)
    assert typ == "OK", store
typ, data = m.uid("SEARCH", None, "ALL")
uids = data[0].split()
subjects, flags, attachments, texts = [], [], [], []
for uid in uids:
    typ, parts = m.uid("FETCH", uid, "(FLAGS BODY.PEEK[])")
    raw = parts[0][1]
    msg = email.message_from_bytes(raw)
    subj = str(email.header.make_header(email.header.decode_header(msg.get("Subject", ""))))
    subjects.append(subj)
    flags.append(imaplib.ParseFlags(parts[0][0]) and [f.decode() for f in imaplib.ParseFlags(parts[0][0])])
    atts = []
    text = ""
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.get_filename() and not text:
            text = part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8", "replace")
        if part.get_filename():
            atts.append({"name": part.get_filename(), "bytes": len(part.get_payload(decode=True) or b"")})
    attachments.append(atts)
    texts.append(text)
m.logout()
print(json.dumps({"subjects": subjects, "flags": flags, "attachments": attachments, "texts": texts}))
