//! Every field of the TL types the loopback peer answers with, set to its empty value
//! (generated from grammers-tl-types 0.11.0; the tests fill in what matters).

use grammers_tl_types as tl;

pub fn blank_user() -> tl::types::User {
    tl::types::User {
        is_self: false,
        contact: false,
        mutual_contact: false,
        deleted: false,
        bot: false,
        bot_chat_history: false,
        bot_nochats: false,
        verified: false,
        restricted: false,
        min: false,
        bot_inline_geo: false,
        support: false,
        scam: false,
        apply_min_photo: false,
        fake: false,
        bot_attach_menu: false,
        premium: false,
        attach_menu_enabled: false,
        bot_can_edit: false,
        close_friend: false,
        stories_hidden: false,
        stories_unavailable: false,
        contact_require_premium: false,
        bot_business: false,
        bot_has_main_app: false,
        bot_forum_view: false,
        bot_forum_can_manage_topics: false,
        bot_can_manage_bots: false,
        bot_guestchat: false,
        bot_guard: false,
        id: 0,
        access_hash: None,
        first_name: None,
        last_name: None,
        username: None,
        phone: None,
        photo: None,
        status: None,
        bot_info_version: None,
        restriction_reason: None,
        bot_inline_placeholder: None,
        lang_code: None,
        emoji_status: None,
        usernames: None,
        stories_max_id: None,
        color: None,
        profile_color: None,
        bot_active_users: None,
        bot_verification_icon: None,
        send_paid_messages_stars: None,
        linked_community_id: None,
    }
}

pub fn blank_config() -> tl::types::Config {
    tl::types::Config {
        default_p2p_contacts: false,
        preload_featured_stickers: false,
        revoke_pm_inbox: false,
        blocked_mode: false,
        force_try_ipv6: false,
        date: 0,
        expires: 0,
        test_mode: false,
        this_dc: 0,
        dc_options: Vec::new(),
        dc_txt_domain_name: String::new(),
        chat_size_max: 0,
        megagroup_size_max: 0,
        forwarded_count_max: 0,
        online_update_period_ms: 0,
        offline_blur_timeout_ms: 0,
        offline_idle_timeout_ms: 0,
        online_cloud_timeout_ms: 0,
        notify_cloud_delay_ms: 0,
        notify_default_delay_ms: 0,
        push_chat_period_ms: 0,
        push_chat_limit: 0,
        edit_time_limit: 0,
        revoke_time_limit: 0,
        revoke_pm_time_limit: 0,
        rating_e_decay: 0,
        stickers_recent_limit: 0,
        channels_read_media_period: 0,
        tmp_sessions: None,
        call_receive_timeout_ms: 0,
        call_ring_timeout_ms: 0,
        call_connect_timeout_ms: 0,
        call_packet_timeout_ms: 0,
        me_url_prefix: String::new(),
        autoupdate_url_prefix: None,
        gif_search_username: None,
        venue_search_username: None,
        img_search_username: None,
        static_maps_provider: None,
        caption_length_max: 0,
        message_length_max: 0,
        webfile_dc_id: 0,
        suggested_lang_code: None,
        lang_pack_version: None,
        base_lang_pack_version: None,
        reactions_default: None,
        autologin_token: None,
    }
}

pub fn blank_auth_authorization(user: tl::enums::User) -> tl::types::auth::Authorization {
    tl::types::auth::Authorization {
        setup_password_required: false,
        otherwise_relogin_days: None,
        tmp_sessions: None,
        future_auth_token: None,
        user,
    }
}

pub fn blank_auth_sentcode(r#type: tl::enums::auth::SentCodeType) -> tl::types::auth::SentCode {
    tl::types::auth::SentCode { r#type, phone_code_hash: String::new(), next_type: None, timeout: None }
}

pub fn blank_account_password() -> tl::types::account::Password {
    tl::types::account::Password {
        has_recovery: false,
        has_secure_values: false,
        has_password: false,
        current_algo: None,
        srp_b: None,
        srp_id: None,
        hint: None,
        email_unconfirmed_pattern: None,
        new_algo: tl::enums::PasswordKdfAlgo::Unknown,
        new_secure_algo: tl::enums::SecurePasswordKdfAlgo::Unknown,
        secure_random: Vec::new(),
        pending_reset_date: None,
        login_email_pattern: None,
    }
}

pub fn blank_updates_state() -> tl::types::updates::State {
    tl::types::updates::State { pts: 0, qts: 0, date: 0, seq: 0, unread_count: 0 }
}
