"""twotier on AWS: the data tier and the stacks that run the app over it."""
