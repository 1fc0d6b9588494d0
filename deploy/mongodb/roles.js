// MongoDB roles and users of the custom-data worker and its token issuers,
// least privilege: each role holds only the actions its code uses, on the
// one collection (listCollections, which MongoDB applies to databases
// only, on its database). See README.md.
//
// Run it with mongosh as a user administrator (userAdmin on admin and on
// the custom-data database, or userAdminAnyDatabase). It is idempotent:
// roles and users that exist are updated to what this file says.
//
//   MONGODB_WORKER_PASSWORD=… MONGODB_ISSUER_PASSWORD=… \
//     mongosh "mongodb://admin@mongo:27017/admin?replicaSet=rs0" --file deploy/mongodb/roles.js
//
// No secret is in this file: each password comes from the environment of
// mongosh, and a user whose password variable is unset is left alone (its
// role is still created). The worker's own variables, when set, say which
// database and collection: CUSTOMDATA_MONGODB_DATABASE,
// CUSTOMDATA_MONGODB_COLLECTION, CUSTOMDATA_PRE_AND_POST_IMAGES.
//
// deploy/mongodb/roles_test.go reads the declarations below and holds them
// equal to what the code uses (internal/opcheck: CollectionActions,
// DatabaseActions; the worker's defaults), so keep their shape.

const database = process.env.CUSTOMDATA_MONGODB_DATABASE || "app";
const collection = process.env.CUSTOMDATA_MONGODB_COLLECTION || "custom_user_data";
const preAndPostImages = process.env.CUSTOMDATA_PRE_AND_POST_IMAGES === "true";

// The worker (customdata-worker run and check): find (per-write lookups,
// index and duplicate checks, the change stream's updateLookup), insert
// and update (a trigger's upsert needs both), remove (DELETE), createIndex
// and listIndexes (the unique user-id index), changeStream (notices).
const workerCollectionActions = ["find", "insert", "update", "remove", "createIndex", "listIndexes", "changeStream"];
// collMod turns on changeStreamPreAndPostImages: only with
// CUSTOMDATA_PRE_AND_POST_IMAGES=true.
const workerPreImageActions = ["collMod"];
// The collection guard reads the collection's UUID and options.
const workerDatabaseActions = ["listCollections"];

// A token issuer (package issuer, cmd/reference-issuer) reads one document
// per user; its cache follows notices through NATS, not a change stream.
const issuerCollectionActions = ["find"];

const workerRole = "customdataWorker";
const issuerRole = "customdataIssuer";
const workerUser = "customdata-worker";
const issuerUser = "issuer";

const workerPrivileges = [
  { resource: { db: database, collection: collection }, actions: preAndPostImages ? workerCollectionActions.concat(workerPreImageActions) : workerCollectionActions },
  { resource: { db: database, collection: "" }, actions: workerDatabaseActions },
];
const issuerPrivileges = [
  { resource: { db: database, collection: collection }, actions: issuerCollectionActions },
];

// Roles live in the custom-data database (a role there may only hold
// privileges on it), users in admin (the default authSource).
function ensureRole(name, privileges) {
  const target = db.getSiblingDB(database);
  if (target.getRole(name) === null) {
    target.createRole({ role: name, privileges: privileges, roles: [] });
    print(`created role ${name} in database ${database}`);
  } else {
    target.updateRole(name, { privileges: privileges, roles: [] });
    print(`updated role ${name} in database ${database}`);
  }
}

function ensureUser(name, passwordVariable, role) {
  const password = process.env[passwordVariable];
  if (!password) {
    print(`${passwordVariable} is not set: user ${name} left alone`);
    return;
  }
  const admin = db.getSiblingDB("admin");
  const roles = [{ role: role, db: database }];
  if (admin.getUser(name) === null) {
    admin.createUser({ user: name, pwd: password, roles: roles });
    print(`created user ${name} in admin with role ${role}`);
  } else {
    admin.updateUser(name, { pwd: password, roles: roles });
    print(`updated user ${name} in admin with role ${role}`);
  }
}

ensureRole(workerRole, workerPrivileges);
ensureRole(issuerRole, issuerPrivileges);
ensureUser(workerUser, "MONGODB_WORKER_PASSWORD", workerRole);
ensureUser(issuerUser, "MONGODB_ISSUER_PASSWORD", issuerRole);
