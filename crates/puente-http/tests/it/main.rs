//! puente-http against real HTTP: the OAuth client against the HubSpot
//! sandbox's authorization server (refresh tokens that stay) and the
//! sandbox kit's (refresh tokens replaced on every refresh, as Bitrix24
//! does), servers on 127.0.0.1:0.

mod oauth;
