// The one message the snapshot details page sends its panel, shared by both sides.

/** The page's buttons: each runs the tree's command of the same name on the snapshot shown. */
export type DetailsAction = 'revert' | 'clone' | 'delete';

export type FromDetailsWebview = { type: 'action'; action: DetailsAction };
