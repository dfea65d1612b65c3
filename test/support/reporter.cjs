// mocha's spec reporter, plus one closing line "N passed, N failed" that any CI can read.
const Mocha = require('mocha');

class SpecWithSummary extends Mocha.reporters.Spec {
  constructor(runner, options) {
    super(runner, options);
    runner.once('end', () => {
      const s = this.stats;
      console.log(`\n${s.passes} passed, ${s.failures} failed`);
    });
  }
}

module.exports = SpecWithSummary;
