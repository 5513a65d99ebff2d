mod connector;
