// A CommonJS script: no exports statement, so every name without a leading underscore is public.
const path = require("path");

function joinPath(folder, file) {
  return path.join(folder, file);
}

function _privateHelper(value) {
  return value;
}

exports.loadShelf = function (file, options = {}) {
  return JSON.parse(file, options.reviver);
};

module.exports.saveShelf = async (file, shelf) => {
  await shelf.flush(file);
};
